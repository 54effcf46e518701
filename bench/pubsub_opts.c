/*
 * pubsub_opts.c: the load client's command line (ps_opts_parse, the usage
 * text), its URL templates (%PORT% expanded once, %CH% per channel, a
 * loopback address required: publisher and subscribers must share the
 * host's clock) and its message template (~text~ between a prefix and a
 * suffix, with \n \r \t \\ escapes).
 */
#include "pubsub.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

ps_opts_t ps_opt;

void ps_opts_usage(void)
{
    fputs(
        "usage: pubsub-client [options]\n"
        "  -m, --mode MODE        eventsource | longpoll | stream | websocket (eventsource)\n"
        "      --sub-url URL      subscriber URL template (http://127.0.0.1:%PORT%/sub/%CH%)\n"
        "      --pub-url URL      publisher URL template (http://127.0.0.1:%PORT%/pub?id=%CH%)\n"
        "  -p, --port N           the value of %PORT%\n"
        "      --ch-prefix S      channel names S0..S<n-1> (ch)\n"
        "  -c, --channels N       channels (1)\n"
        "  -s, --subscribers N    subscribers, subscriber i on channel i mod N (1)\n"
        "  -P, --publishers N     publisher connections, channel c published by c mod N (1)\n"
        "  -n, --messages N       messages per channel (1000 unless --duration)\n"
        "  -d, --duration S       publish for S seconds instead\n"
        "  -b, --size B           message body bytes, 55..1048576 (64)\n"
        "  -r, --rate R           messages/s over all publishers; 0 = full speed (0)\n"
        "      --pipeline D       publish requests in flight per connection (1)\n"
        "      --conns-per-proc N connections per client process; 0 = one process (0)\n"
        "  -t, --template T       message template, ~text~ = the message (~text~)\n"
        "  -H, --sub-header H     extra subscriber request header \"Name: value\" (repeatable)\n"
        "      --no-settle        publish at once; subscribers count from their first message\n"
        "      --settle-ms MS     warm-up handshake limit (10000)\n"
        "      --drain-ms MS      after publishing, wait this long without a delivery (2000)\n"
        "      --timeout S        bound of each waiting phase (60)\n"
        "      --server-pids L    comma-separated pids: their trees' CPU time over the run\n"
        "  -q, --quiet            only the RESULT line\n"
        "  -v, --verbose          progress lines\n"
        "Prints RESULT key=value ... on stdout, a summary on stderr; exits 1 on any error.\n"
        "pubsub-client --self-test [SEED]: checks the parsers and counters without a server.\n",
        stderr);
}

const char *ps_mode_name(enum ps_mode m)
{
    static const char *const names[] = {"eventsource", "longpoll", "stream", "websocket"};
    return names[m];
}

static int parse_u32(const char *what, const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (!*s || *end || s[0] == '-' || v < lo || v > hi) {
        fprintf(stderr, "pubsub-client: %s: '%s' is not a number in %u..%u\n", what, s, lo, hi);
        return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

static int parse_double(const char *what, const char *s, double lo, double hi, double *out)
{
    char *end;
    double v = strtod(s, &end);
    if (!*s || *end || !(v >= lo && v <= hi)) {
        fprintf(stderr, "pubsub-client: %s: '%s' is not a number in %g..%g\n", what, s, lo, hi);
        return -1;
    }
    *out = v;
    return 0;
}

/* Replaces every %PORT% of t by port into out. */
static int expand_port(const char *t, const char *port, char *out, size_t cap)
{
    size_t o = 0;
    while (*t) {
        const char *rep = NULL;
        size_t skip = 1, rl = 1;
        if (!strncmp(t, "%PORT%", 6)) {
            if (!port) {
                fprintf(stderr, "pubsub-client: a URL uses %%PORT%% but no --port was given\n");
                return -1;
            }
            rep = port;
            rl = strlen(port);
            skip = 6;
        } else {
            rep = t;
        }
        if (o + rl >= cap)
            return -1;
        memcpy(out + o, rep, rl);
        o += rl;
        t += skip;
    }
    out[o] = 0;
    return 0;
}

static int is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6)
        return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
    return 0;
}

static int parse_url(const char *what, const char *tmpl, const char *port, ps_url_t *u)
{
    char buf[1280];
    if (expand_port(tmpl, port, buf, sizeof buf) < 0) {
        fprintf(stderr, "pubsub-client: %s: too long or unusable: %s\n", what, tmpl);
        return -1;
    }
    const char *p = buf;
    if (!strncmp(p, "http://", 7))
        p += 7;
    else if (!strncmp(p, "ws://", 5))
        p += 5;
    else {
        fprintf(stderr, "pubsub-client: %s: only http:// or ws:// URLs: %s\n", what, buf);
        return -1;
    }
    const char *slash = strchr(p, '/');
    size_t hl = slash ? (size_t)(slash - p) : strlen(p);
    if (hl == 0 || hl >= sizeof u->host) {
        fprintf(stderr, "pubsub-client: %s: no host or too long: %s\n", what, buf);
        return -1;
    }
    memcpy(u->host, p, hl);
    u->host[hl] = 0;
    snprintf(u->path, sizeof u->path, "%s", slash ? slash : "/");
    if (strlen(slash ? slash : "/") >= sizeof u->path) {
        fprintf(stderr, "pubsub-client: %s: path too long\n", what);
        return -1;
    }
    char name[128], svc[16] = "80";
    const char *h = u->host, *colon;
    if (h[0] == '[') { /* [v6]:port */
        const char *rb = strchr(h, ']');
        if (!rb) {
            fprintf(stderr, "pubsub-client: %s: bad host %s\n", what, h);
            return -1;
        }
        snprintf(name, sizeof name, "%.*s", (int)(rb - h - 1), h + 1);
        if (rb[1] == ':')
            snprintf(svc, sizeof svc, "%s", rb + 2);
    } else if ((colon = strrchr(h, ':'))) {
        snprintf(name, sizeof name, "%.*s", (int)(colon - h), h);
        snprintf(svc, sizeof svc, "%s", colon + 1);
    } else {
        snprintf(name, sizeof name, "%s", h);
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(name, svc, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "pubsub-client: %s: %s: %s\n", what, u->host, gai_strerror(rc));
        return -1;
    }
    if (!is_loopback(res->ai_addr)) {
        fprintf(stderr,
                "pubsub-client: %s: %s is not a loopback address: the client measures latency "
                "with this host's clock, so it only drives a server on this host\n",
                what, name);
        freeaddrinfo(res);
        return -1;
    }
    memcpy(&u->addr, res->ai_addr, res->ai_addrlen);
    u->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int ps_url_path(const ps_url_t *u, uint32_t ch, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *t = u->path; *t;) {
        if (!strncmp(t, "%CH%", 4)) {
            int n = snprintf(out + o, cap - o, "%s%u", ps_opt.ch_prefix, ch);
            if (n < 0 || (size_t)n >= cap - o)
                return -1;
            o += (size_t)n;
            t += 4;
        } else {
            if (o + 1 >= cap)
                return -1;
            out[o++] = *t++;
        }
    }
    out[o] = 0;
    return 0;
}

/* Copies s[0..n) into out with \n \r \t \\ unescaped. */
static int unescape(const char *s, size_t n, char *out, size_t *olen)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '\\' && i + 1 < n) {
            char e = s[++i];
            c = e == 'n' ? '\n' : e == 'r' ? '\r' : e == 't' ? '\t' : e == '\\' ? '\\' : 0;
            if (!c) {
                fprintf(stderr, "pubsub-client: template: unknown escape \\%c\n", e);
                return -1;
            }
        }
        if (o + 1 >= PS_MAX_TEMPLATE)
            return -1;
        out[o++] = c;
    }
    out[o] = 0;
    *olen = o;
    return 0;
}

static int parse_template(const char *t)
{
    const char *m = strstr(t, "~text~");
    if (!m || strstr(m + 6, "~text~")) {
        fprintf(stderr, "pubsub-client: template: needs ~text~ exactly once: %s\n", t);
        return -1;
    }
    if (unescape(t, (size_t)(m - t), ps_opt.prefix, &ps_opt.prefix_len) < 0 ||
        unescape(m + 6, strlen(m + 6), ps_opt.suffix, &ps_opt.suffix_len) < 0) {
        fprintf(stderr, "pubsub-client: template: unusable: %s\n", t);
        return -1;
    }
    if (strchr(ps_opt.prefix, '~') || strchr(ps_opt.suffix, '~')) {
        fprintf(stderr, "pubsub-client: template: only ~text~ is known: %s\n", t);
        return -1;
    }
    return 0;
}

static int parse_pids(const char *s)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        uint32_t v;
        if (ps_opt.n_server_pids == sizeof ps_opt.server_pids / sizeof ps_opt.server_pids[0]) {
            fprintf(stderr, "pubsub-client: --server-pids: at most 64 pids\n");
            return -1;
        }
        if (parse_u32("--server-pids", tok, 1, 0x3fffffff, &v) < 0)
            return -1;
        ps_opt.server_pids[ps_opt.n_server_pids++] = (int)v;
    }
    return 0;
}

enum {
    O_SUB_URL = 256, O_PUB_URL, O_CH_PREFIX, O_PIPELINE, O_CPP, O_NO_SETTLE, O_SETTLE_MS,
    O_DRAIN_MS, O_TIMEOUT, O_PIDS
};

int ps_opts_parse(int argc, char **argv)
{
    static const struct option lopts[] = {
        {"mode", required_argument, 0, 'm'},      {"sub-url", required_argument, 0, O_SUB_URL},
        {"pub-url", required_argument, 0, O_PUB_URL}, {"port", required_argument, 0, 'p'},
        {"ch-prefix", required_argument, 0, O_CH_PREFIX},
        {"channels", required_argument, 0, 'c'},  {"subscribers", required_argument, 0, 's'},
        {"publishers", required_argument, 0, 'P'}, {"messages", required_argument, 0, 'n'},
        {"duration", required_argument, 0, 'd'},  {"size", required_argument, 0, 'b'},
        {"rate", required_argument, 0, 'r'},      {"pipeline", required_argument, 0, O_PIPELINE},
        {"conns-per-proc", required_argument, 0, O_CPP},
        {"template", required_argument, 0, 't'},  {"sub-header", required_argument, 0, 'H'},
        {"no-settle", no_argument, 0, O_NO_SETTLE}, {"settle-ms", required_argument, 0, O_SETTLE_MS},
        {"drain-ms", required_argument, 0, O_DRAIN_MS}, {"timeout", required_argument, 0, O_TIMEOUT},
        {"server-pids", required_argument, 0, O_PIDS}, {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'},          {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *sub_url = "http://127.0.0.1:%PORT%/sub/%CH%";
    const char *pub_url = "http://127.0.0.1:%PORT%/pub?id=%CH%";
    const char *port = NULL, *tmpl = "~text~";
    uint32_t v;
    int o;
    ps_opt = (ps_opts_t){.mode = PS_EVENTSOURCE, .ch_prefix = "ch", .channels = 1,
                         .subscribers = 1, .publishers = 1, .size = 64, .pipeline = 1,
                         .settle = 1, .settle_ms = 10000, .drain_ms = 2000, .timeout_s = 60};
    while ((o = getopt_long(argc, argv, "m:p:c:s:P:n:d:b:r:t:H:qvh", lopts, NULL)) != -1) {
        switch (o) {
        case 'm':
            if (!strcmp(optarg, "eventsource") || !strcmp(optarg, "sse"))
                ps_opt.mode = PS_EVENTSOURCE;
            else if (!strcmp(optarg, "longpoll") || !strcmp(optarg, "long-polling"))
                ps_opt.mode = PS_LONGPOLL;
            else if (!strcmp(optarg, "stream") || !strcmp(optarg, "streaming") ||
                     !strcmp(optarg, "chunked"))
                ps_opt.mode = PS_STREAM;
            else if (!strcmp(optarg, "websocket") || !strcmp(optarg, "ws"))
                ps_opt.mode = PS_WEBSOCKET;
            else {
                fprintf(stderr, "pubsub-client: --mode: unknown mode '%s'\n", optarg);
                return -1;
            }
            break;
        case O_SUB_URL: sub_url = optarg; break;
        case O_PUB_URL: pub_url = optarg; break;
        case 'p':
            if (parse_u32("--port", optarg, 1, 65535, &v) < 0)
                return -1;
            port = optarg;
            break;
        case O_CH_PREFIX:
            if (strlen(optarg) > 64 || strpbrk(optarg, " \t\r\n/?#%")) {
                fprintf(stderr, "pubsub-client: --ch-prefix: up to 64 URL-safe bytes\n");
                return -1;
            }
            ps_opt.ch_prefix = optarg;
            break;
        case 'c':
            if (parse_u32("--channels", optarg, 1, PS_MAX_CHANNELS, &ps_opt.channels) < 0)
                return -1;
            break;
        case 's':
            if (parse_u32("--subscribers", optarg, 0, 1000000, &ps_opt.subscribers) < 0)
                return -1;
            break;
        case 'P':
            if (parse_u32("--publishers", optarg, 1, 100000, &ps_opt.publishers) < 0)
                return -1;
            break;
        case 'n':
            if (parse_u32("--messages", optarg, 1, 1000000000, &v) < 0)
                return -1;
            ps_opt.messages = v;
            break;
        case 'd':
            if (parse_double("--duration", optarg, 0.01, 86400, &ps_opt.duration_s) < 0)
                return -1;
            break;
        case 'b':
            if (parse_u32("--size", optarg, PS_HDR_LEN, PS_MAX_SIZE, &ps_opt.size) < 0)
                return -1;
            break;
        case 'r':
            if (parse_double("--rate", optarg, 0, 1e9, &ps_opt.rate) < 0)
                return -1;
            break;
        case O_PIPELINE:
            if (parse_u32("--pipeline", optarg, 1, 1024, &ps_opt.pipeline) < 0)
                return -1;
            break;
        case O_CPP:
            if (parse_u32("--conns-per-proc", optarg, 0, 1000000, &ps_opt.conns_per_proc) < 0)
                return -1;
            break;
        case 't': tmpl = optarg; break;
        case 'H':
            if (ps_opt.n_sub_headers == PS_MAX_HEADERS) {
                fprintf(stderr, "pubsub-client: --sub-header: at most %d\n", PS_MAX_HEADERS);
                return -1;
            }
            if (!strchr(optarg, ':') || strpbrk(optarg, "\r\n") || strlen(optarg) > 512) {
                fprintf(stderr, "pubsub-client: --sub-header: not a \"Name: value\" line: %s\n",
                        optarg);
                return -1;
            }
            ps_opt.sub_headers[ps_opt.n_sub_headers++] = optarg;
            break;
        case O_NO_SETTLE: ps_opt.settle = 0; break;
        case O_SETTLE_MS:
            if (parse_u32("--settle-ms", optarg, 1, 3600000, &ps_opt.settle_ms) < 0)
                return -1;
            break;
        case O_DRAIN_MS:
            if (parse_u32("--drain-ms", optarg, 1, 3600000, &ps_opt.drain_ms) < 0)
                return -1;
            break;
        case O_TIMEOUT:
            if (parse_u32("--timeout", optarg, 1, 86400, &ps_opt.timeout_s) < 0)
                return -1;
            break;
        case O_PIDS:
            if (parse_pids(optarg) < 0)
                return -1;
            break;
        case 'q': ps_opt.quiet = 1; break;
        case 'v': ps_opt.verbose = 1; break;
        case 'h': ps_opts_usage(); exit(0);
        default: return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "pubsub-client: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (ps_opt.messages && ps_opt.duration_s > 0) {
        fprintf(stderr, "pubsub-client: --messages and --duration exclude each other\n");
        return -1;
    }
    if (!ps_opt.messages && ps_opt.duration_s <= 0)
        ps_opt.messages = 1000;
    if (ps_opt.publishers > ps_opt.channels) {
        fprintf(stderr,
                "pubsub-client: --publishers %u > --channels %u: a channel has one publisher, "
                "whose order the subscribers check (use --pipeline for more in flight)\n",
                ps_opt.publishers, ps_opt.channels);
        return -1;
    }
    if (parse_url("--sub-url", sub_url, port, &ps_opt.sub) < 0 ||
        parse_url("--pub-url", pub_url, port, &ps_opt.pub) < 0 || parse_template(tmpl) < 0)
        return -1;
    char probe[1100];
    if (ps_url_path(&ps_opt.sub, ps_opt.channels - 1, probe, sizeof probe) < 0 ||
        ps_url_path(&ps_opt.pub, ps_opt.channels - 1, probe, sizeof probe) < 0) {
        fprintf(stderr, "pubsub-client: a URL is too long once %%CH%% is expanded\n");
        return -1;
    }
    if (getrandom(&ps_opt.run_id, sizeof ps_opt.run_id, 0) != sizeof ps_opt.run_id)
        ps_opt.run_id = (uint32_t)time(NULL) ^ (uint32_t)clock();
    return 0;
}
