/*
 * pubsub_selftest.c: `pubsub-client --self-test [SEED]`, the client's own
 * check without a server. It feeds made-up server responses, cut into
 * random pieces, through the real subscriber paths (http_parser, the
 * EventSource line reader, chunked streams, long-poll tags, WebSocket
 * frames through wslay) and checks what the accounting counts: messages
 * dropped, repeated, swapped and from another run are planted, so a
 * counter that missed or invented one fails. Also the template's prefix and
 * suffix, a message cut at a unit's end, and the latency histogram.
 */
#include "pubsub.h"

#include <nettle/base64.h>
#include <nettle/sha1.h>
#include <stdio.h>
#include <wslay/wslay.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int passed, failed;
static uint64_t rng;

static uint32_t rnd(uint32_t n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng % n);
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (cond) {                                                                                \
            passed++;                                                                              \
        } else {                                                                                   \
            failed++;                                                                              \
            fprintf(stderr, "self-test: FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond);         \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

typedef struct { char *p; size_t len, cap; } buf_t;

static void put(buf_t *b, const void *d, size_t n)
{
    if (!n)
        return;
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 4096;
        b->p = realloc(b->p, b->cap);
        if (!b->p)
            abort();
    }
    memcpy(b->p + b->len, d, n);
    b->len += n;
}

static void puts_(buf_t *b, const char *s) { put(b, s, strlen(s)); }

/* One message (template included) of channel ch, sequence seq, of run run. */
static void put_msg(buf_t *b, uint32_t ch, uint32_t seq, uint32_t run)
{
    char m[PS_MAX_SIZE > 70000 ? 70000 : PS_MAX_SIZE];
    uint32_t keep = ps_opt.run_id;
    ps_opt.run_id = run;
    ps_msg_header(m, ch, seq, ps_now_ns());
    ps_opt.run_id = keep;
    memset(m + PS_HDR_LEN, 'x', ps_opt.size - PS_HDR_LEN);
    put(b, ps_opt.prefix, ps_opt.prefix_len);
    put(b, m, ps_opt.size);
    put(b, ps_opt.suffix, ps_opt.suffix_len);
}

/* The sequence a test sends: 1..n with planted faults; what it should count. */
typedef struct { uint32_t seq[4000], n, lost, dup, reord, stale; } plan_t;

static void make_plan(plan_t *pl, uint32_t n)
{
    memset(pl, 0, sizeof *pl);
    pl->seq[pl->n++] = 0; /* warm-up */
    for (uint32_t s = 1; s <= n; s++) {
        if (s % 97 == 0) { /* dropped */
            pl->lost++;
            continue;
        }
        if (s % 89 == 0 && s + 1 <= n && (s + 1) % 97 && (s + 1) % 89) { /* swapped with s+1 */
            pl->seq[pl->n++] = s + 1;
            pl->seq[pl->n++] = s;
            pl->reord++;
            s++;
            continue;
        }
        pl->seq[pl->n++] = s;
        if (s % 53 == 0) { /* repeated */
            pl->seq[pl->n++] = s;
            pl->dup++;
        }
        if (s % 71 == 0) { /* another run's message in between */
            pl->seq[pl->n++] = 0xffffffffu;
            pl->stale++;
        }
    }
}

typedef struct {
    ps_worker_t w;
    ps_slot_t slot;
    ps_sub_t s;
    uint64_t win[PS_WIN_BITS / 64];
} rig_t;

static ps_shared_t sh;

static void rig_init(rig_t *r, enum ps_mode mode, uint32_t size, const char *pre, const char *suf)
{
    memset(r, 0, sizeof *r);
    ps_opt.mode = mode;
    ps_opt.size = size;
    ps_opt.settle = 1;
    ps_opt.ch_prefix = "ch";
    snprintf(ps_opt.sub.host, sizeof ps_opt.sub.host, "127.0.0.1:1");
    snprintf(ps_opt.sub.path, sizeof ps_opt.sub.path, "/sub/%%CH%%");
    snprintf(ps_opt.prefix, sizeof ps_opt.prefix, "%s", pre);
    snprintf(ps_opt.suffix, sizeof ps_opt.suffix, "%s", suf);
    ps_opt.prefix_len = strlen(pre);
    ps_opt.suffix_len = strlen(suf);
    r->w.slot = &r->slot;
    r->w.phase = PH_RUN;
    r->w.errors_printed = 20; /* the test looks at counts, not at messages */
    r->s.ch = 7;
    r->s.c = (ps_conn_t){.fd = -1, .kind = K_SUB, .url = &ps_opt.sub};
    ps_acct_init(&r->s.acct, r->win);
    ps_sub_reset(&r->s);
    http_parser_init(&r->s.c.hp, HTTP_RESPONSE);
    r->s.c.hp.data = &r->s.c;
    ps_sh = &sh;
}

static void rig_free(rig_t *r)
{
    ps_ws_free(&r->s);
    free(r->s.c.out);
}

/* Feeds b in random pieces (1..maxpiece bytes); the first failing piece's status. */
static int feed(rig_t *r, const buf_t *b, uint32_t maxpiece)
{
    for (size_t off = 0; off < b->len;) {
        size_t k = 1 + rnd(maxpiece);
        if (k > b->len - off)
            k = b->len - off;
        r->s.now = ps_now_ns();
        int rc = ps_sub_input(&r->w, &r->s, b->p + off, k);
        if (rc != 0)
            return rc;
        off += k;
    }
    return 0;
}

static void check_counts(const char *what, rig_t *r, const plan_t *pl, uint32_t n)
{
    ps_acct_t *a = &r->s.acct;
    uint64_t exp = n; /* all acknowledged, counted from sequence 1 */
    CHECK(r->w.sub_errors == 0, "%s: %llu errors", what, (unsigned long long)r->w.sub_errors);
    CHECK(a->warmed && a->base == 1, "%s: warm-up not seen", what);
    CHECK(exp - a->got == pl->lost, "%s: lost %llu, planted %u", what,
          (unsigned long long)(exp - a->got), pl->lost);
    CHECK(a->dup == pl->dup, "%s: duplicated %llu, planted %u", what,
          (unsigned long long)a->dup, pl->dup);
    CHECK(a->reord == pl->reord, "%s: reordered %llu, planted %u", what,
          (unsigned long long)a->reord, pl->reord);
    CHECK(a->stale == pl->stale, "%s: stale %llu, planted %u", what,
          (unsigned long long)a->stale, pl->stale);
    CHECK(a->delivered == a->got + a->dup, "%s: delivered %llu != got %llu + dup %llu", what,
          (unsigned long long)a->delivered, (unsigned long long)a->got,
          (unsigned long long)a->dup);
}

static uint32_t plan_run(const plan_t *pl, uint32_t i)
{
    return pl->seq[i] == 0xffffffffu ? ps_opt.run_id ^ 0x5a5a5a5au : ps_opt.run_id;
}

static uint32_t plan_seq(const plan_t *pl, uint32_t i)
{
    return pl->seq[i] == 0xffffffffu ? 5 : pl->seq[i];
}

/* ---- the modes ------------------------------------------------------------------------ */

static void test_stream(uint32_t size, const char *pre, const char *suf, uint32_t maxpiece)
{
    rig_t *r = calloc(1, sizeof *r);
    plan_t pl;
    buf_t b = {0}, body = {0};
    const uint32_t n = 1500;
    rig_init(r, PS_STREAM, size, pre, suf);
    make_plan(&pl, n);
    puts_(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    for (uint32_t i = 0; i < pl.n; i++)
        put_msg(&body, 7, plan_seq(&pl, i), plan_run(&pl, i));
    for (size_t off = 0; off < body.len;) { /* chunks that ignore message boundaries */
        size_t k = 1 + rnd(3 * size);
        if (k > body.len - off)
            k = body.len - off;
        char h[32];
        snprintf(h, sizeof h, "%zx\r\n", k);
        puts_(&b, h);
        put(&b, body.p + off, k);
        puts_(&b, "\r\n");
        off += k;
    }
    CHECK(feed(r, &b, maxpiece) == 0, "stream: input refused");
    char what[96];
    snprintf(what, sizeof what, "stream %u B '%s~text~%s'", size, pre, suf);
    check_counts(what, r, &pl, n);
    rig_free(r);
    free(r);
    free(b.p);
    free(body.p);
}

/* pre/suf may hold \n: such a message comes as several data: lines. */
static void test_eventsource(uint32_t size, const char *pre, const char *suf, uint32_t maxpiece)
{
    rig_t *r = calloc(1, sizeof *r);
    plan_t pl;
    buf_t b = {0};
    const uint32_t n = 1500;
    rig_init(r, PS_EVENTSOURCE, size, pre, suf);
    make_plan(&pl, n);
    /* No length, no chunks: the body runs until the connection closes, as nchan sends it. */
    puts_(&b, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n: hi\n\n");
    static const char *const eol[] = {"\n", "\r\n", "\r"};
    for (uint32_t i = 0; i < pl.n; i++) {
        const char *e = eol[rnd(3)];
        char idl[64];
        snprintf(idl, sizeof idl, "id: 1796115466:%u%s", i, e);
        puts_(&b, idl);
        if (rnd(4) == 0) {
            puts_(&b, ": comment");
            puts_(&b, e);
        }
        buf_t m = {0};
        put_msg(&m, 7, plan_seq(&pl, i), plan_run(&pl, i));
        for (size_t off = 0; off <= m.len;) {
            const char *nl = memchr(m.p + off, '\n', m.len - off);
            size_t k = nl ? (size_t)(nl - (m.p + off)) : m.len - off;
            puts_(&b, rnd(2) ? "data: " : "data:");
            put(&b, m.p + off, k);
            puts_(&b, e);
            off += k + 1;
        }
        free(m.p);
        puts_(&b, e);
    }
    CHECK(feed(r, &b, maxpiece) == 0, "eventsource: input refused");
    char what[96];
    snprintf(what, sizeof what, "eventsource %u B '%s~text~%s'", size, pre, suf);
    check_counts(what, r, &pl, n);
    rig_free(r);
    free(r);
    free(b.p);
}

/* Long-polling: one or several messages per response, the tags sent back. */
static void test_longpoll(uint32_t size, int several, uint32_t maxpiece)
{
    rig_t *r = calloc(1, sizeof *r);
    plan_t pl;
    buf_t b = {0};
    const uint32_t n = 1500;
    rig_init(r, PS_LONGPOLL, size, "", several ? "\n" : "");
    make_plan(&pl, n);
    uint32_t responses = 0;
    for (uint32_t i = 0; i < pl.n;) {
        buf_t body = {0};
        uint32_t k = several ? 1 + rnd(5) : 1;
        for (uint32_t j = 0; j < k && i < pl.n; j++, i++) {
            put_msg(&body, 7, plan_seq(&pl, i), plan_run(&pl, i));
            if (several && j + 1 == k && rnd(2)) /* the last separator may be left out */
                body.len -= ps_opt.suffix_len;
        }
        char h[256];
        snprintf(h, sizeof h,
                 "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nLast-Modified: Tue, 01 Dec 2026 "
                 "08:57:%02u GMT\r\nEtag: %u\r\n\r\n",
                 body.len, responses % 60, responses);
        puts_(&b, h);
        put(&b, body.p, body.len);
        free(body.p);
        if (rnd(5) == 0) { /* nothing new: the same tags again */
            snprintf(h, sizeof h, "HTTP/1.1 304 Not Modified\r\nEtag: %u\r\n\r\n", responses);
            puts_(&b, h);
        }
        responses++;
    }
    CHECK(feed(r, &b, maxpiece) == 0, "longpoll: input refused");
    char what[96];
    snprintf(what, sizeof what, "longpoll %u B%s", size, several ? " several" : "");
    check_counts(what, r, &pl, n);
    /* A request was queued after each response, the last with the last response's tags. */
    char want[128];
    snprintf(want, sizeof want, "If-None-Match: %u\r\n", responses - 1);
    r->s.c.out = realloc(r->s.c.out, r->s.c.out_len + 1);
    r->s.c.out[r->s.c.out_len] = 0;
    const char *last = r->s.c.out;
    for (const char *q; (q = strstr(last + 1, "GET ")); last = q)
        ;
    CHECK(strstr(last, want) != NULL, "%s: the next request lacks '%s'", what, want);
    CHECK(strstr(last, "If-Modified-Since: Tue, 01 Dec 2026 08:57:") != NULL,
          "%s: the next request lacks If-Modified-Since", what);
    rig_free(r);
    free(r);
    free(b.p);
}

static void ws_frame(buf_t *b, uint8_t opcode, int fin, const char *data, size_t len)
{
    uint8_t h[10];
    size_t hl = 2;
    h[0] = (uint8_t)((fin ? 0x80 : 0) | opcode);
    if (len < 126) {
        h[1] = (uint8_t)len;
    } else if (len < 65536) {
        h[1] = 126, h[2] = (uint8_t)(len >> 8), h[3] = (uint8_t)len;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (uint8_t)(len >> (8 * (7 - i)));
        hl = 10;
    }
    put(b, h, hl);
    put(b, data, len);
}

static void test_websocket(uint32_t size, uint32_t maxpiece)
{
    rig_t *r = calloc(1, sizeof *r);
    plan_t pl;
    buf_t b = {0};
    const uint32_t n = 1500;
    char req[2048];
    size_t rl;
    rig_init(r, PS_WEBSOCKET, size, "", "");
    make_plan(&pl, n);
    CHECK(ps_ws_request(&r->w, &r->s, req, sizeof req, &rl) == 0, "websocket: no request");
    struct sha1_ctx ctx;
    uint8_t dg[SHA1_DIGEST_SIZE];
    char acc[40] = "";
    sha1_init(&ctx);
    sha1_update(&ctx, strlen(r->s.ws_key), (const uint8_t *)r->s.ws_key);
    sha1_update(&ctx, 36, (const uint8_t *)"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    sha1_digest(&ctx, sizeof dg, dg);
    base64_encode_raw(acc, sizeof dg, dg);
    char h[256];
    snprintf(h, sizeof h,
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n\r\n",
             acc);
    puts_(&b, h);
    uint32_t pings = 0;
    for (uint32_t i = 0; i < pl.n; i++) {
        buf_t m = {0};
        put_msg(&m, 7, plan_seq(&pl, i), plan_run(&pl, i));
        if (rnd(3) == 0) { /* fragmented, with a ping between the fragments */
            size_t cut = 1 + rnd((uint32_t)m.len - 1);
            ws_frame(&b, WSLAY_TEXT_FRAME, 0, m.p, cut);
            ws_frame(&b, WSLAY_PING, 1, "pg", 2);
            pings++;
            ws_frame(&b, WSLAY_CONTINUATION_FRAME, 1, m.p + cut, m.len - cut);
        } else {
            ws_frame(&b, WSLAY_TEXT_FRAME, 1, m.p, m.len);
        }
        free(m.p);
    }
    CHECK(feed(r, &b, maxpiece) == 0, "websocket: input refused");
    char what[96];
    snprintf(what, sizeof what, "websocket %u B", size);
    check_counts(what, r, &pl, n);
    /* Each ping got a masked pong: 0x8a, 0x80 | 2, 4 mask bytes, 2 bytes. */
    uint32_t pongs = 0;
    for (size_t i = 0; i + 8 <= r->s.c.out_len; i++)
        if ((uint8_t)r->s.c.out[i] == 0x8a && (uint8_t)r->s.c.out[i + 1] == 0x82)
            pongs++;
    CHECK(pongs >= pings, "%s: %u pings, %u pongs", what, pings, pongs);
    rig_free(r);
    free(r);
    free(b.p);
}

/* Things that must be refused. */
static void test_refusals(void)
{
    rig_t *r = calloc(1, sizeof *r);
    buf_t b = {0}, body = {0};
    rig_init(r, PS_LONGPOLL, 64, "", "");
    put_msg(&body, 7, 1, ps_opt.run_id);
    body.len -= 3; /* cut */
    char h[128];
    snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", body.len);
    puts_(&b, h);
    put(&b, body.p, body.len);
    CHECK(feed(r, &b, 1000) < 0 && r->w.sub_errors == 1, "a cut message was accepted");
    rig_free(r);

    rig_init(r, PS_STREAM, 64, "<", ">\n");
    b.len = body.len = 0;
    put_msg(&body, 8, 1, ps_opt.run_id); /* another channel */
    snprintf(h, sizeof h, "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\n\r\n", body.len);
    puts_(&b, h);
    put(&b, body.p, body.len);
    CHECK(feed(r, &b, 1000) < 0 && r->w.sub_errors == 1, "a message of another channel passed");
    rig_free(r);

    rig_init(r, PS_STREAM, 100, "<", ">\n");
    b.len = body.len = 0;
    ps_opt.size = 64; /* two messages shorter than the client expects */
    put_msg(&body, 7, 1, ps_opt.run_id);
    put_msg(&body, 7, 2, ps_opt.run_id);
    ps_opt.size = 100;
    puts_(&b, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    snprintf(h, sizeof h, "%zx\r\n", body.len);
    puts_(&b, h);
    put(&b, body.p, body.len);
    puts_(&b, "\r\n");
    CHECK(feed(r, &b, 1000) < 0 && r->w.sub_errors == 1, "a message of the wrong size passed");
    rig_free(r);

    rig_init(r, PS_EVENTSOURCE, 64, "", "");
    b.len = 0;
    puts_(&b, "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
    CHECK(feed(r, &b, 1000) < 0 && r->w.sub_errors == 1, "a 403 was taken for a stream");
    rig_free(r);
    free(r);
    free(b.p);
    free(body.p);
}

static void test_window(void)
{
    rig_t *r = calloc(1, sizeof *r);
    buf_t b = {0};
    rig_init(r, PS_STREAM, 64, "", "\n");
    puts_(&b, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
    put_msg(&b, 7, 0, ps_opt.run_id);
    uint32_t seqs[] = {1, 2, 200000, 3, 199999, 200000, 400000, 200001};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++)
        put_msg(&b, 7, seqs[i], ps_opt.run_id);
    CHECK(feed(r, &b, 50) == 0, "window: input refused");
    ps_acct_t *a = &r->s.acct;
    /* 3 and 200001 are older than the window (counted new and out of order);
     * 199999 is out of order; the second 200000 a duplicate. */
    CHECK(a->got == 7 && a->dup == 1 && a->reord == 3 && a->max == 400000,
          "window: got %llu dup %llu reord %llu max %u", (unsigned long long)a->got,
          (unsigned long long)a->dup, (unsigned long long)a->reord, a->max);
    rig_free(r);
    free(r);
    free(b.p);
}

static void test_hist(void)
{
    ps_hist_t *h = calloc(1, sizeof *h);
    for (uint64_t v = 1; v <= 100000; v++)
        ps_hist_add(h, v * 1000); /* 1 us .. 100 ms */
    uint64_t p50 = ps_hist_quantile(h, 0.5), p99 = ps_hist_quantile(h, 0.99);
    CHECK(p50 > 49000000 && p50 < 51000000, "p50 %llu, want ~50 ms", (unsigned long long)p50);
    CHECK(p99 > 98000000 && p99 < 100500000, "p99 %llu, want ~99 ms", (unsigned long long)p99);
    CHECK(h->max == 100000000ull && h->count == 100000, "max/count");
    ps_hist_t *z = calloc(1, sizeof *z);
    ps_hist_merge(z, h);
    CHECK(ps_hist_quantile(z, 0.5) == p50, "merge changed p50");
    free(h);
    free(z);
}

int ps_selftest(const char *seed_arg)
{
    uint64_t seed = seed_arg ? strtoull(seed_arg, NULL, 0) : (uint64_t)time(NULL) ^ (uint64_t)clock();
    if (!seed)
        seed = 1;
    rng = seed;
    fprintf(stderr, "self-test: seed %llu\n", (unsigned long long)seed);
    ps_opt.run_id = 0x1234abcd;
    static const uint32_t sizes[] = {PS_HDR_LEN, 64, 1000, 16384, 66000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        uint32_t sz = sizes[i];
        test_stream(sz, "", "", 1 + rnd(2 * sz));
        test_stream(sz, "{\"m\":\"", "\"}\r\n", 7);
        test_stream(sz, "", "\n", 100000);
        test_eventsource(sz, "", "", 1 + rnd(2 * sz));
        test_eventsource(sz, "", "", 3);
        test_eventsource(sz, "[\n", "]\n\n>", 1 + rnd(2 * sz));
        test_longpoll(sz, 0, 1 + rnd(2 * sz));
        test_longpoll(sz, 1, 5);
        test_websocket(sz, 1 + rnd(2 * sz));
        test_websocket(sz, 2);
    }
    test_refusals();
    test_window();
    test_hist();
    printf("self-test: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
