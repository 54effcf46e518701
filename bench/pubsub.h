/*
 * pubsub.h: what the files of the pub/sub load client (build/<v>/pubsub-client,
 * bench/README.md "pub/sub load client") share: its options, the message
 * format, the per-subscriber accounting, the latency histogram, the state
 * shared between its processes, and the event loop's connections.
 *
 *   pubsub_main.c  processes: fork, phases, results, the RESULT line
 *   pubsub_opts.c  command line, URL templates, message templates
 *   pubsub_msg.c   message bodies, the payload parser, accounting, histogram
 *   pubsub_loop.c  one process's event loop: connections and publishers
 *   pubsub_sub.c   HTTP subscribers: long-polling, EventSource, streaming
 *   pubsub_ws.c    WebSocket subscribers (handshake, wslay's frame API)
 *   pubsub_cpu.c   CPU time of a server's process tree from /proc
 *   pubsub_selftest.c  --self-test: the parsers and counters on made-up responses
 */
#ifndef PUBSUB_H
#define PUBSUB_H

#include <http_parser.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* ---- options ---------------------------------------------------------------------------- */

enum ps_mode { PS_EVENTSOURCE, PS_LONGPOLL, PS_STREAM, PS_WEBSOCKET };

/* A parsed URL template: %PORT% already expanded, %CH% kept in the path. */
typedef struct ps_url {
    struct sockaddr_storage addr; /* a loopback address */
    socklen_t addrlen;
    char host[128];   /* the Host header: host[:port] as written */
    char path[1024];  /* path and query, may hold %CH% */
} ps_url_t;

#define PS_MAX_HEADERS 8
#define PS_MAX_TEMPLATE 256

typedef struct ps_opts {
    enum ps_mode mode;
    ps_url_t sub, pub;
    const char *ch_prefix;    /* channel names: <prefix><index> */
    uint32_t channels, subscribers, publishers;
    uint64_t messages;        /* per channel; 0 with a duration */
    double duration_s;        /* 0 with a message count */
    uint32_t size;            /* message body bytes */
    double rate;              /* messages/s over all publishers; 0 = full speed */
    uint32_t pipeline;        /* publish requests in flight per publisher connection */
    uint32_t conns_per_proc;  /* 0: everything in one process */
    int settle;               /* warm-up handshake before publishing */
    uint32_t settle_ms, drain_ms, timeout_s;
    char prefix[PS_MAX_TEMPLATE], suffix[PS_MAX_TEMPLATE]; /* template around ~text~ */
    size_t prefix_len, suffix_len;
    const char *sub_headers[PS_MAX_HEADERS]; /* extra "Name: value" lines */
    uint32_t n_sub_headers;
    int server_pids[64];
    uint32_t n_server_pids;
    int quiet, verbose;
    uint32_t run_id;          /* random; messages of another run are stale */
} ps_opts_t;

extern ps_opts_t ps_opt;

/* Parses argv into ps_opt; prints the reason and returns -1 when wrong. */
int ps_opts_parse(int argc, char **argv);
void ps_opts_usage(void);
const char *ps_mode_name(enum ps_mode m);
/* Writes the template path with %CH% replaced by channel ch's name; -1 if it
 * does not fit in cap. */
int ps_url_path(const ps_url_t *u, uint32_t ch, char *out, size_t cap);

/* ---- messages --------------------------------------------------------------------------- */

/*
 * A message body: "r=RRRRRRRR;c=CCCCCC;s=SSSSSSSSSS;t=TTTTTTTTTTTTTTTTTTT;" then
 * 'x' padding to the requested size. r: the run (hex), c: the channel, s: the
 * channel's sequence number (0 = warm-up), t: CLOCK_MONOTONIC ns at sending.
 * Fixed width, so a publisher rewrites the digits in place.
 */
#define PS_HDR_LEN 55
#define PS_MAX_SIZE (1u << 20)
#define PS_MAX_CHANNELS 999999u

/* Writes the header of a message into buf (PS_HDR_LEN bytes). */
void ps_msg_header(char *buf, uint32_t ch, uint32_t seq, uint64_t t_ns);

/* Incremental parser of template-wrapped messages in a byte stream. */
enum ps_pp_state { PP_PREFIX, PP_HDR, PP_BODY, PP_SUFFIX };
typedef struct ps_pp {
    uint8_t state;
    uint32_t matched;        /* bytes of prefix/suffix matched, or header bytes held */
    uint8_t stale;           /* the message in hand is another run's */
    uint64_t skip;           /* body bytes left */
    uint32_t ch, seq;        /* of the message in hand, from its header */
    uint64_t t_ns;
    char hdr[PS_HDR_LEN];
} ps_pp_t;

/* ---- accounting ------------------------------------------------------------------------- */

#define PS_WIN_BITS 65536u /* reorder/duplicate window per subscriber */

typedef struct ps_acct {
    uint64_t *win;        /* PS_WIN_BITS bits: seqs in (max - W, max] seen */
    uint32_t base;        /* first seq counted (1 after a warm-up), 0 = none yet */
    uint32_t max;         /* highest seq seen */
    uint64_t got;         /* distinct seqs */
    uint64_t delivered;   /* every real delivery, duplicates included */
    uint64_t dup, reord, stale;
    int warmed;
} ps_acct_t;

/* Latency histogram: exact below 128 ns, then 64 buckets per power of two. */
#define PS_HIST_N 3776
typedef struct ps_hist {
    uint64_t n[PS_HIST_N];
    uint64_t count, max;
} ps_hist_t;

void ps_hist_add(ps_hist_t *h, uint64_t v);
void ps_hist_merge(ps_hist_t *into, const ps_hist_t *from);
/* The value at quantile q (0..1), a bucket's middle; 0 when empty. */
uint64_t ps_hist_quantile(const ps_hist_t *h, double q);

/* ---- state shared between the processes (one anonymous shared mapping) ------------------- */

enum ps_phase { PH_CONNECT, PH_WARM, PH_RUN, PH_DRAIN, PH_DONE };

/* What one process reports at the end (written before its 'finished'). */
typedef struct ps_result {
    uint64_t published, pub_errors, pub_sent;
    uint64_t delivered, got, expected, lost, extra, dup, reord, stale;
    uint64_t sub_errors, reconnects, unanswered;
    ps_hist_t lat;
} ps_result_t;

typedef struct ps_slot {
    _Atomic int ready;              /* every connection up, every request sent */
    _Atomic int pub_done;           /* publishers stopped and answered */
    _Atomic int finished;           /* result written */
    _Atomic uint64_t delivered;     /* live count, for the drain */
    _Atomic uint64_t last_ack_ns, last_delivery_ns;
    _Atomic uint64_t errors;        /* live count, for the parent's progress line */
    _Atomic uint32_t dead_subs, dead_pubs; /* connections given up */
    ps_result_t res;
    char pad[64];
} ps_slot_t;

typedef struct ps_shared {
    _Atomic int phase;
    _Atomic uint64_t start_ns;      /* set before phase RUN */
    _Atomic uint64_t end_ns;        /* publishing deadline (duration mode) */
    _Atomic uint32_t warm;          /* subscribers that saw a warm-up message */
    uint32_t nproc;
    _Atomic uint64_t *pub_ok;       /* [channels]: acknowledged publishes, at pub_done */
    ps_slot_t *slots;               /* [nproc] */
} ps_shared_t;

extern ps_shared_t *ps_sh;

/* ---- one process's event loop ------------------------------------------------------------ */

enum ps_kind { K_PUB, K_SUB };
enum ps_cstate { CS_IDLE, CS_CONNECTING, CS_OPEN, CS_DEAD };

typedef struct ps_conn {
    int fd;
    uint8_t kind, state;
    uint8_t want_out;        /* EPOLLOUT registered */
    uint8_t closing;         /* the server said Connection: close */
    const ps_url_t *url;
    char *out;               /* output buffer */
    size_t out_off, out_len, out_cap;
    http_parser hp;
    uint32_t reconnects;
} ps_conn_t;

struct wslay_frame_context;

typedef struct ps_sub {
    ps_conn_t c;
    uint32_t ch, idx;
    ps_pp_t pp;
    ps_acct_t acct;
    int status;              /* of the response being read */
    uint8_t hstate;          /* header callbacks: 0 in a name, 1 in a value */
    uint8_t htarget;         /* which value is being captured */
    uint8_t hname_len;
    uint8_t in_body;         /* a response's body is being delivered */
    uint8_t ws_open;         /* handshake done: bytes go to wslay */
    uint8_t up;              /* subscribed: connected (long-poll), headers in, or handshake done */
    uint8_t sse_state, sse_cr, sse_had_data;
    uint8_t sse_name_len;
    char sse_name[8];
    char hname[32];
    char lastmod[96], etag[96];   /* long-polling: the last response's tags */
    uint8_t lastmod_len, etag_len;
    char ws_key[32], ws_accept[32];
    uint8_t ws_accept_len;
    struct wslay_frame_context *ws;
    const char *ws_in;       /* bytes read but not yet given to wslay */
    size_t ws_in_len;
    uint64_t ws_frame_got;   /* payload bytes of the current frame */
    uint8_t ws_ctl[128];     /* a control frame's payload */
    uint32_t ws_ctl_len;
    uint64_t now;            /* arrival time of the bytes being parsed */
} ps_sub_t;

typedef struct ps_pubfifo { uint32_t k, seq; } ps_pubfifo_t; /* channel index, seq (0 = warm-up) */

typedef struct ps_pub {
    ps_conn_t c;
    uint32_t idx;
    uint32_t *chans, nchans, next;   /* owned channels, round-robin */
    uint32_t *seq;                   /* [nchans]: last seq sent */
    uint64_t *ok;                    /* [nchans]: acknowledged */
    char **heads;                    /* [nchans]: request head up to Content-Length */
    size_t *head_len;
    ps_pubfifo_t *fifo;              /* [pipeline + nchans]: requests in flight (warm-ups: one a channel) */
    uint32_t fifo_head, inflight, resend;
    uint64_t sent, errors;
    int status, stopped;
} ps_pub_t;

typedef struct ps_worker {
    uint32_t id;
    int ep;
    ps_sub_t *subs;
    uint32_t nsubs;
    ps_pub_t *pubs;
    uint32_t npubs;
    char *rbuf;
    size_t rbuf_cap;
    ps_slot_t *slot;
    ps_hist_t lat;
    uint64_t delivered, sub_errors, pub_errors, reconnects, errors_printed;
    uint64_t last_delivery_ns;
    int phase;
} ps_worker_t;

/* Runs process id's share of the connections until phase DONE; returns the exit status. */
int ps_worker_run(uint32_t id);

/* pubsub_loop.c, for the subscriber files */
int ps_conn_write(ps_worker_t *w, ps_conn_t *c, const void *data, size_t len);
int ps_conn_flush(ps_worker_t *w, ps_conn_t *c);
void ps_sub_error(ps_worker_t *w, ps_sub_t *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void ps_worker_note(ps_worker_t *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
uint64_t ps_now_ns(void);

/* pubsub_msg.c */
void ps_acct_init(ps_acct_t *a, uint64_t *win);
/* Feeds bytes of template-wrapped messages; -1 (after ps_sub_error) on a malformed one. */
int ps_pp_feed(ps_worker_t *w, ps_sub_t *s, const char *p, size_t n);
/* The end of a unit (a response body, an event, a frame): -1 if a message is cut. */
int ps_pp_end(ps_worker_t *w, ps_sub_t *s);
void ps_pp_reset(ps_pp_t *pp);

/* pubsub_sub.c */
extern const http_parser_settings ps_sub_settings;
/* The subscriber's first request (and each long-poll's next), queued on its connection. */
int ps_sub_request(ps_worker_t *w, ps_sub_t *s);
/* Bytes read on a subscriber's connection; -1 when the connection must be dropped. */
int ps_sub_input(ps_worker_t *w, ps_sub_t *s, const char *p, size_t n);
/* The server closed the connection; 0 if that was expected (a long-poll told so). */
int ps_sub_eof(ps_worker_t *w, ps_sub_t *s);
void ps_sub_reset(ps_sub_t *s);

/* pubsub_ws.c */
int ps_ws_request(ps_worker_t *w, ps_sub_t *s, char *buf, size_t cap, size_t *len);
/* The handshake's answer is in: check it and set up wslay. */
int ps_ws_open(ps_worker_t *w, ps_sub_t *s);
int ps_ws_input(ps_worker_t *w, ps_sub_t *s, const char *p, size_t n);
void ps_ws_free(ps_sub_t *s);

/* pubsub_selftest.c: runs the self-test (seed from the argument, or the clock); exit status. */
int ps_selftest(const char *seed);

/* pubsub_cpu.c: utime+stime in seconds of the pids and all their descendants; -1 on error. */
double ps_cpu_tree(const int *pids, uint32_t n);

#endif /* PUBSUB_H */
