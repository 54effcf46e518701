/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * http_internal.h: what the HTTP layer's files share (never installed, never
 * included by http.h): the server, connection and request structures and
 * the functions one file calls in another (plain externs: the layer is
 * linked into programs, not exported from a library). http.c holds the server
 * (listeners, accept, drain, free), http_conn.c a connection (reading,
 * parsing, timers, closing), http_req.c the request accessors and helpers,
 * http_reply.c the responses, http_ws.c WebSocket.
 */
#ifndef DEMO_HTTP_INTERNAL_H
#define DEMO_HTTP_INTERNAL_H

#include "http.h"
#include "http_ws.h"

#include <http_parser.h>
#include <netinet/in.h>
#include <stdarg.h>

struct bufferevent;
struct event;
struct evbuffer;

/* Input buffered while no request is being parsed (one is with the app,
 * pipelined ones wait): past this the connection stops reading. */
#define HTTP_READ_HWM (128 * 1024)
/* Pipelined requests answered in one wake-up before yielding to others. */
#define HTTP_PIPELINE_BATCH 8

typedef struct http_conn_s http_conn_t;

typedef struct http_listener_s {
    int fd;
    struct event *ev;
    http_server_t *srv;
} http_listener_t;

struct http_server_s {
    struct event_base *base;
    http_limits_t lim; /* defaults filled in */
    http_handler_t on_request;
    void *ctx;
    shk_log_handler_t log;
    void *log_ctx;
    http_listener_t **ls;
    unsigned nls;
    struct event *pause_ev; /* ends an accept pause */
    struct event *done_ev;  /* calls drain_done from the loop */
    int paused;             /* accept paused for lack of descriptors */
    int in_episode;         /* logged the current run of pauses */
    int listening;          /* listener events added */
    int draining;
    int freeing;
    void (*drain_done)(void *ctx);
    void *drain_ctx;
    http_conn_t *conns; /* every open connection, doubly linked */
    http_conn_t *dirty; /* direct connections with output, written at the turn's end */
    struct event *flush_ev; /* writes them (http_conn_flush) */
    struct event *flush_late; /* the bound on how long flush_ev may wait (HTTP_FLUSH_MAX_US) */
    int flush_defer;          /* flush_ev has the base's lowest priority: flush_late armed */
    http_stats_t st;
    char date[40]; /* "Date: ..." of date_sec */
    long long date_sec;
};

enum {
    HC_READ,    /* reading a request (c->req NULL: idle, before its first byte) */
    HC_BUSY,    /* the request is the app's */
    HC_WS,      /* WebSocket */
    HC_CLOSING, /* writing the last output; then FIN and linger */
    HC_LINGER   /* FIN sent; input discarded until EOF or linger_ms */
};

struct http_conn_s {
    http_server_t *srv;
    http_conn_t *prev, *next;
    struct bufferevent *bev;
    int fd;
    int state;
    struct sockaddr_storage peer;
    socklen_t peerlen;
    char peer_text[64];
    http_parser parser;
    http_req_t *req;       /* the request being read or served */
    http_ws_t *ws;         /* in HC_WS */
    struct event *timer;   /* header, body, keep-alive or linger deadline */
    struct event *resume;  /* parses waiting input from the loop */
    unsigned busy;         /* depth of calls out to the app; no free inside */
    unsigned dead : 1;     /* free when busy drops to 0 */
    unsigned close_after : 1; /* close after the current response */
    unsigned wait_flush : 1;  /* parse again once the output is written */
    unsigned peer_eof : 1;    /* the client sent its FIN */
    unsigned slow_armed : 1;  /* on_slow may be called (re-armed when output is empty) */
    unsigned direct : 1;      /* EV_WRITE off: output is written by http_conn_flush */
    unsigned dirty : 1;       /* on srv->dirty, held */
    http_conn_t *dirty_next;
    int err;               /* status the parser callbacks decided (414, 431, 413, ...) */
    const char *err_text;  /* its reason for the body */
    uint64_t nreq;
};

enum {
    HR_READING, /* being received */
    HR_APP,     /* with the app, no response started */
    HR_STREAM   /* streamed response started */
};

struct http_req_s {
    http_conn_t *conn; /* NULL once detached (the client left, nobody watched) */
    http_server_t *srv;
    int state;
    int method;
    int version; /* 10, 11 */
    unsigned head : 1;
    unsigned keepalive : 1;   /* the request allows the connection to persist */
    unsigned upgrade : 1;     /* the parser stopped at an Upgrade */
    unsigned chunked : 1;     /* the streamed response is chunked */
    unsigned headers_done : 1;
    unsigned in_value : 1;    /* the last header callback was a value */
    unsigned in_close_cb : 1; /* inside on_close: no reply calls */
    char *url;
    size_t url_len, url_cap;
    char *hbuf; /* "name\0value\0" for each header */
    size_t hlen, hcap, hbytes;
    struct {
        uint32_t name, value;
    } *hdr;
    unsigned nhdr, hdr_cap;
    unsigned nlines; /* header lines seen, trailers included */
    char *body;
    size_t body_len, body_cap;
    char *path;        /* decoded, cached */
    char **owned;      /* decoded argument strings, freed with the request */
    unsigned nowned, owned_cap;
    http_req_cbs_t cbs;
    void *cb_ctx;
};

struct wslay_event_context;

struct http_ws_s {
    http_conn_t *conn; /* NULL once over */
    struct wslay_event_context *ctx;
    http_ws_cbs_t cbs;
    void *cb_ctx;
    int over;    /* on_close was called */
    int in_recv; /* inside wslay_event_recv: its context is freed after */
    int orphan;  /* over during wslay_event_recv: free when it returns */
};

/* ---- http.c ---- */
void http_srv_log(http_server_t *srv, int level, const char *fmt, ...)
    SHK_PRINTF(3, 4);
/* A connection was freed: drain accounting, accepting again under max_conns. */
void http_srv_conn_gone(http_server_t *srv);
/* "Date: <IMF-fixdate>\r\n" of now, cached per second. */
const char *http_srv_date(http_server_t *srv);

/* ---- http_conn.c ---- */
http_conn_t *http_conn_new(http_server_t *srv, int fd, const struct sockaddr *sa,
                                      socklen_t salen);
/* Keep c allocated across a call that may close it; release frees it then
 * if it was closed meanwhile. */
/* flush_ev's callback: write the output of the connections on srv->dirty. */
void http_conn_flush(int fd, short what, void *arg);
/* At http_server_free: let go of the connections still on srv->dirty. */
void http_conn_flush_forget(http_server_t *srv);
void http_conn_hold(http_conn_t *c);
void http_conn_release(http_conn_t *c);
/* Free now (or when the app's call returns). Tells the app if it holds a
 * request or WebSocket on it (on_close; 1006 / `ws_code` for WebSocket). */
void http_conn_drop(http_conn_t *c, int ws_code);
/* The current request was finished: close after it or read the next one. */
void http_conn_req_done(http_conn_t *c);
/* Write the output, then FIN and linger. */
void http_conn_close_after_output(http_conn_t *c);
/* The server is draining: act on this connection. */
void http_conn_drain(http_conn_t *c);
/* Output passed out_high_water? Calls on_slow or drops. 1 if dropped. */
int http_conn_check_slow(http_conn_t *c);
struct evbuffer *http_conn_output(http_conn_t *c);
struct evbuffer *http_conn_input(http_conn_t *c);
void http_conn_schedule(http_conn_t *c);
void http_conn_set_timer(http_conn_t *c, int ms);

/* ---- http_req.c ---- */
http_req_t *http_req_new(http_conn_t *c);
void http_req_free(http_req_t *req);
/* Detach from its connection: on_close if watched (then freed), else kept
 * for the app to finish. */
void http_req_gone(http_req_t *req);
int http_req_append(char **buf, size_t *len, size_t *cap, const char *data, size_t n);

/* ---- http_reply.c ---- */
/* The layer's own error reply (400, 408, 413, ...) with `Connection: close`,
 * written to the connection (no request object needed). */
void http_reply_error(http_conn_t *c, int status, const char *text);
/* Status line and headers into `out`; SHK_EINVAL for a bad extra header. */
int http_reply_head(http_req_t *req, struct evbuffer *out, int status,
                               const char *const *headers, const char *more, int close);
int http_reply_check_headers(const char *const *headers);

/* ---- http_ws.c ---- */
void http_ws_read(http_conn_t *c);
void http_ws_drain(http_conn_t *c);
void http_ws_timeout(http_conn_t *c);
/* The connection is going away: on_close(code) once, free the WebSocket. */
void http_ws_gone(http_conn_t *c, int code);

#endif
