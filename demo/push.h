/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * push.h: nginx-push-stream's HTTP interface in the demo, on the library's
 * channel store (chan/shk_chan.h) and the demo's HTTP layer (http.h). The
 * settings the push_stream_* directives give (a main part for the store,
 * a part per location), the text helpers (templates, channel paths, message
 * ids and positions, variables, HTTP dates), and the request handlers: the
 * publisher, the subscriber modes, /channels-stats, and the page at / with
 * the stats channel it draws. docs/pushstream.md is the interface.
 *
 * push_conf.c, push_tmpl.c and push_path.c need no libevent (test_demo_push
 * calls them directly); push_pub.c, push_sub.c, push_stats.c and
 * push_page.c are the server's and link with the HTTP layer.
 */
#ifndef DEMO_PUSH_H
#define DEMO_PUSH_H

#include <limits.h>
#include <regex.h>
#include <stddef.h>
#include <stdint.h>

#include "shmkit.h"

/* What a location does (push_loc_t.kind). */
enum { PUSH_NONE = 0, PUSH_PUBLISHER, PUSH_SUBSCRIBER, PUSH_STATS, PUSH_PAGE };
/* Subscriber modes (push_loc_t.mode), push-stream's names in this order. */
enum { PUSH_STREAMING = 0, PUSH_POLLING, PUSH_LONGPOLLING, PUSH_EVENTSOURCE, PUSH_WEBSOCKET };

#define PUSH_MAX_CHANNELS 16        /* channels in one subscription */
#define PUSH_UNSET UINT_MAX         /* a time or count not given */
#define PUSH_PING_ID -1             /* ~id~ of a ping message (push-stream's) */
#define PUSH_DELETED_ID -2          /* ~id~ of the channel-deleted message */
#define PUSH_DEFAULT_DELETED_TEXT "Channel deleted"
#define PUSH_DEFAULT_STATS_MS 1000  /* demo_stats_channel's default interval */
#define PUSH_POS_MAX (PUSH_MAX_CHANNELS * 32) /* longest position text, NUL included */

/* The store and the text every location shares (http level in nginx). */
typedef struct push_main_s {
    size_t shm_size;                 /* push_stream_shared_memory_size; 0: not given */
    shk_chan_opts_t opts;            /* the store's limits from the directives */
    char prefix[SHK_CHAN_PREFIX_MAX + 1]; /* push_stream_wildcard_channel_prefix */
    char events[SHK_CHAN_ID_MAX + 1];     /* push_stream_events_channel_id */
    char *deleted_text;              /* push_stream_channel_deleted_message_text */
    char *ping_text;                 /* push_stream_ping_message_text */
    size_t max_body;                 /* client_max_body_size; 0: 1m */
    size_t out_limit;                /* subscriber_output_limit; 0: the HTTP layer's */
    char stats_channel[SHK_CHAN_ID_MAX + 1]; /* demo_stats_channel; "": none */
    unsigned stats_ms;               /* its interval */
    int limits_given;                /* a push_stream_* limit of the store was given */
} push_main_t;

/* One location's push-stream settings. Pointers NULL, ints -1 and times
 * PUSH_UNSET mean "not given here": push_conf_done fills them from the
 * defaults given at the main, http or server level, then push-stream's. */
typedef struct push_loc_s {
    int kind;                 /* PUSH_* */
    int admin;                /* push_stream_publisher admin */
    int mode;                 /* push_stream_subscriber MODE */
    char *path;               /* push_stream_channels_path; NULL: the default (docs) */
    char *last_time;          /* push_stream_last_received_message_time */
    char *last_tag;           /* push_stream_last_received_message_tag */
    char *last_event_id;      /* push_stream_last_event_id */
    char *header, *message, *footer; /* templates; message NULL: "~text~" */
    char *origins;            /* push_stream_allowed_origins */
    char *content_type;       /* default_type */
    int store;                /* push_stream_store_messages */
    int info_on_publish;      /* push_stream_channel_info_on_publish */
    int authorized_only;      /* push_stream_authorized_channels_only */
    int ws_publish;           /* push_stream_websocket_allow_publish */
    unsigned ping_ms;         /* push_stream_ping_message_interval; 0: none */
    unsigned ttl_ms;          /* push_stream_subscriber_connection_ttl; 0: none */
    unsigned lp_ttl_ms;       /* push_stream_longpolling_connection_ttl */
    unsigned wildcard_max;    /* push_stream_wildcard_channel_max_qtd */
    unsigned retry_ms;        /* eventsource_retry (ours); 0: none */
    size_t max_body;          /* client_max_body_size here; 0: not given */
    char *page;               /* demo_page: the file's bytes */
    size_t page_len;
} push_loc_t;

/* ---- push_conf.c: the directives ------------------------------------------------ */

/* The directives, NULL-terminated; `loc_ctx` is the context of the demo's
 * location blocks, `outer` those where main-level ones may appear (main,
 * http, server). Handlers reach the settings through demo_conf.h. */
const shk_conf_directive_t *push_conf_directives(unsigned loc_ctx, unsigned outer);
/* A location's settings before any directive: everything unset. */
void push_loc_init(push_loc_t *pl);
/* After reading: fill each location from the defaults, check what a
 * location needs, declare the store (shk_cycle_set_chan) when
 * push_stream_shared_memory_size was given. Errors are SHK_ECONF with the
 * location named. */
int push_conf_done(shk_cycle_t *cy, push_main_t *pm, push_loc_t *def, push_loc_t *const *locs,
                   const char *const *names, unsigned n);
void push_loc_free(push_loc_t *pl);
void push_main_free(push_main_t *pm);
/* "streaming" ... "websocket" to PUSH_*, -1 if none (case-insensitive). */
int push_mode_parse(const char *s);
const char *push_mode_name(int mode);

/* ---- push_tmpl.c: buffers and templates --------------------------------------------- */

typedef struct push_buf_s {
    char *p;
    size_t len, cap;
    int failed; /* an allocation failed: the contents are short */
} push_buf_t;

void push_buf_add(push_buf_t *b, const void *data, size_t len);
void push_buf_str(push_buf_t *b, const char *s);
void push_buf_printf(push_buf_t *b, const char *fmt, ...) SHK_PRINTF(2, 3);
/* A JSON string: quotes, \" \\ and control bytes escaped. */
void push_buf_json(push_buf_t *b, const char *s, size_t len);
void push_buf_free(push_buf_t *b);

/* What a template sees of a message. */
typedef struct push_view_s {
    long long id;             /* seq within the channel; PUSH_PING_ID, PUSH_DELETED_ID */
    const char *text;
    size_t len;
    const char *channel;      /* "" for a ping */
    uint64_t time_ms;         /* 0 for a ping: now */
    uint32_t tag;
    const char *event_id, *event_type; /* "" if none */
    const char *position;     /* the subscriber's position after it (ours); NULL: "" */
} push_view_t;

/* Append `tmpl` (NULL: "~text~") with push-stream's tokens replaced:
 * ~id~ ~text~ ~size~ ~channel~ ~time~ (an HTTP date) ~tag~ ~event-id~
 * ~event-type~, and ours, ~position~ (what the subscriber sends back to
 * resume after this message). Other text is copied as it is. */
void push_tmpl_render(push_buf_t *b, const char *tmpl, const push_view_t *v);

/* An HTTP date ("Tue, 01 Dec 2026 09:44:21 GMT") of `sec` into out[32]. */
void push_http_date(int64_t sec, char out[32]);
/* Parse an HTTP date (IMF-fixdate, as we write them): SHK_OK or SHK_EINVAL. */
int push_http_date_parse(const char *s, int64_t *sec);

/* ---- push_path.c: channel paths, ids, positions, variables -------------------------- */

typedef struct push_chan_s {
    char id[SHK_CHAN_ID_MAX + 1];
    unsigned backtrack;        /* .bN; 0: none */
} push_chan_t;

/*
 * The channels of a subscription path: ids separated by '/', each with an
 * optional ".bN" (backtrack N stored messages). Empty segments are skipped.
 * SHK_OK with *n set; SHK_ENOENT (no channel: "No channel id provided."),
 * SHK_ERANGE (more than `max` channels, an id longer than max_id_len, a
 * backtrack above 1000000), SHK_EINVAL (a bad id, the same channel twice),
 * each with the text for a 400 in shk_last_errmsg().
 */
int push_parse_channels(const char *path, size_t max_id_len, push_chan_t *out, unsigned max,
                        unsigned *n);

/* "<time_ms>:<tag>" into out (at least 32 bytes). */
void push_id_format(const shk_chan_msgid_t *id, char *out, size_t cap);
/* One id from s[0..len): digits ':' digits, range-checked. */
int push_id_parse(const char *s, size_t len, shk_chan_msgid_t *id);
/* A position: n ids separated by ',' (one per channel of the
 * subscription, in its order), bare or as an entity tag (W/"...", "...").
 * SHK_OK or SHK_EINVAL (another count, a bad id). */
int push_pos_parse(const char *s, unsigned n, shk_chan_msgid_t *pos);
/* The position text of pos[0..n) into out (PUSH_POS_MAX bytes). */
void push_pos_format(const shk_chan_msgid_t *pos, unsigned n, char *out, size_t cap);

/* Variables in a directive's value: $arg_NAME (the query argument, decoded;
 * absent: empty), $1..$9 (a regex location's captures), $uri (the decoded
 * path), text around them kept. */
typedef int (*push_arg_fn)(void *ctx, const char *name, const char **value);
/* Check a value's variables at configuration time: SHK_OK or SHK_EINVAL
 * naming the variable. */
int push_value_check(const char *value);
/* Evaluate into b. `caps` holds 10 pairs of offsets into `path` (-1: none). */
void push_value_eval(push_buf_t *b, const char *value, const char *path, const regoff_t *caps,
                     push_arg_fn arg, void *ctx);

/* ---- the server side (push_pub.c, push_sub.c, push_stats.c, push_page.c) ------------- */

struct event_base;
typedef struct http_req_s http_req_t;

typedef struct push_redis_s push_redis_t;

/* What every handler needs, one per worker. */
typedef struct push_srv_s {
    shk_worker_t *w;
    shk_chan_t *ch;             /* the store; NULL: none (push locations answer 500) */
    struct event_base *base;
    const push_main_t *pm;
    int draining;               /* the worker stops: new subscribers are refused */
    struct event *stats_ev;     /* the stats channel's timer (slot 0) */
    uint64_t stats_pub, stats_deliv, stats_at; /* the last sample */
    push_redis_t *redis;        /* channels_redis: publishes go through Redis (push_redis.c) */
    /* The last message rendered for a one-channel subscriber (push_sub.c):
     * the store gives a message to each of its subscribers on this worker
     * in turn, and for those of one location, mode and channel the frame is
     * the same bytes, so it is made once. ok: the key and frame match;
     * busy: a frame is being emitted (a call within it renders its own). */
    struct {
        const struct push_loc_s *pl;
        int mode, ok, busy;
        uint64_t time_ms, seq;
        uint32_t tag;
        char channel[SHK_CHAN_ID_MAX + 1];
        push_buf_t frame;
    } fc;
} push_srv_t;

/* A request that matched a push location: the path and the regex's
 * captures (10 pairs, -1: none) evaluate the location's variables. */
typedef struct push_match_s {
    const char *path;      /* decoded */
    const char *rest;      /* after a prefix location's path; "" for others */
    regoff_t caps[20];
} push_match_t;

void push_handle(push_srv_t *ps, http_req_t *req, const push_loc_t *pl, const push_match_t *m);
void push_pub_handle(push_srv_t *ps, http_req_t *req, const push_loc_t *pl,
                     const push_match_t *m);
void push_sub_handle(push_srv_t *ps, http_req_t *req, const push_loc_t *pl,
                     const push_match_t *m);
void push_stats_handle(push_srv_t *ps, http_req_t *req, const push_loc_t *pl,
                       const push_match_t *m);
void push_page_handle(push_srv_t *ps, http_req_t *req, const push_loc_t *pl);

/* The worker's start and stop: the stats channel's timer (the worker in
 * slot 0 publishes), freed at the end. */
int push_srv_start(push_srv_t *ps);
void push_srv_stop(push_srv_t *ps);

/* ---- push_redis.c: publishing through Redis (channels_redis) ---- */

#define PUSH_REDIS_APPLY_WAIT_MS 200 /* a publish's 200 waits this long for the local store */
#define PUSH_REDIS_APPLY_POLL_MS 1   /* ... looking at it this often */

/* The worker's start: with channels_redis, the worker's publisher through
 * the relay (ps->redis set); without, nothing. SHK_OK or the error. */
int push_redis_start(push_srv_t *ps);
/* After the HTTP server was freed: what waits is dropped. */
void push_redis_stop(push_srv_t *ps);
/* Next to shk_chan_tick: publishes past their timeout fail. */
void push_redis_tick(push_srv_t *ps);
/* 1 in Redis mode. */
int push_redis_on(const push_srv_t *ps);
/* A checked POST/PUT (channel id, body size): published through Redis,
 * the request held and answered when Redis did (docs/pushstream.md). */
void push_redis_publish(push_srv_t *ps, http_req_t *req, const push_loc_t *pl, const char *id,
                        const void *body, size_t len);
/* A WebSocket subscriber's message on channel `id` (failures logged). */
void push_redis_ws_publish(push_srv_t *ps, const char *id, const void *data, size_t len);
/* `, "redis": {...}` (the link, shk_redis_stats) for /channels-stats. */
void push_redis_stats_json(push_srv_t *ps, push_buf_t *b);

/* Helpers the handlers share (push_pub.c). */
/* Evaluate the location's channel id (push_stream_channels_path, default
 * $arg_id) for a publisher or stats request into out. */
void push_eval_path(http_req_t *req, const push_loc_t *pl, const push_match_t *m,
                    const char *dflt, push_buf_t *out);
/* Reply with a text body and push-stream's status; adds the CORS headers
 * of push_stream_allowed_origins. */
void push_reply_text(http_req_t *req, const push_loc_t *pl, int status, const char *text);
void push_reply_json(http_req_t *req, const push_loc_t *pl, int status, const push_buf_t *b);
/* The CORS headers of a location into hdr (room for 7 pointers); the count. */
unsigned push_cors(const push_loc_t *pl, int publisher, const char **hdr);
/* One channel's info as push-stream writes it. */
void push_info_json(push_buf_t *b, const shk_chan_info_t *in);

#endif
