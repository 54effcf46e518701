/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * http.h: the demo's HTTP/1.1 server layer on libevent (an event_base and a
 * bufferevent per connection), with requests parsed by http_parser (Debian's
 * libhttp-parser-dev). One server per event loop (per worker); it adopts
 * listening sockets that someone else opened (the master) and never closes
 * them. It serves whole replies with a length, streamed replies (chunked on
 * HTTP/1.1, close-delimited on 1.0), requests held open until the app
 * answers (long-polling), and WebSocket (http_ws.h). It bounds what a
 * client can make it hold or spend (http_limits_t), pauses accepting on
 * EMFILE instead of spinning, and stops gracefully: no request it accepted
 * is lost, and keep-alive connections close only between requests.
 *
 * Conventions: calls that can fail return SHK_OK or a negative SHK_E...
 * status with the reason in shk_last_errmsg(); pointer returns are NULL on
 * failure. Everything is single-threaded: call only from the thread running
 * the server's event_base. The layer never prints; it logs through the
 * callback given to http_server_set_log(). Behaviour and limits in detail:
 * docs/http.md.
 */
#ifndef DEMO_HTTP_H
#define DEMO_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "shk_core.h"

struct event_base;

typedef struct http_server_s http_server_t;
typedef struct http_req_s http_req_t;

/* ---- limits ------------------------------------------------------------------ */

/* Defaults of http_limits_t; a field left 0 takes its default. */
#define HTTP_DEF_MAX_URL 8192               /* request target bytes; over: 414 */
#define HTTP_DEF_MAX_HEADER_BYTES 32768     /* header names + values; over: 431 */
#define HTTP_DEF_MAX_HEADERS 100            /* header lines; over: 431 */
#define HTTP_DEF_MAX_BODY (1024 * 1024)     /* request body or WebSocket message; 413 */
#define HTTP_DEF_HEADER_TIMEOUT_MS 10000    /* first byte (or accept) to end of headers; 408 */
#define HTTP_DEF_BODY_TIMEOUT_MS 10000      /* longest gap between two reads of a body; 408 */
#define HTTP_DEF_KEEPALIVE_MS 60000         /* idle keep-alive connection; then closed */
#define HTTP_DEF_SEND_TIMEOUT_MS 30000      /* longest wait for a client to take output */
#define HTTP_DEF_LINGER_MS 2000             /* reading (and discarding) after our FIN */
#define HTTP_DEF_MAX_CONNS 1024             /* connections per server; then stop accepting */
#define HTTP_DEF_ACCEPT_PAUSE_MS 500        /* accepting paused this long on EMFILE etc. */
#define HTTP_DEF_ACCEPT_BATCH 16            /* accept() calls per wake-up of a listener */
#define HTTP_DEF_OUT_HIGH_WATER (1024 * 1024) /* output queued for a stream or WebSocket */

/* What one server lets a client make it hold or spend. Sizes in bytes,
 * times in milliseconds. 0 takes the default above; a negative timeout
 * means "no limit" (not allowed for accept_pause_ms). The 4xx replies the
 * layer writes itself say in their text body which limit was hit, and the
 * connection is closed after them. */
typedef struct http_limits_s {
    size_t max_url;          /* request target (the request line's URL): 414 */
    size_t max_header_bytes; /* sum of header names and values, trailers included: 431 */
    unsigned max_headers;    /* header lines, trailers included: 431 */
    size_t max_body;         /* request body (Content-Length or chunked): 413; and the
                                largest WebSocket message received (close 1009) */
    int header_timeout_ms;   /* from accept (first request) or from the request's first
                                byte (later ones) to the end of its headers: 408, or a
                                silent close if no byte of a request came */
    int body_timeout_ms;     /* longest silence while reading a body: 408 */
    int keepalive_ms;        /* an idle keep-alive connection is closed after this */
    int send_timeout_ms;     /* output pending and none taken for this long: the
                                connection is dropped (the app is told, see on_close) */
    int linger_ms;           /* after the layer's last byte and FIN, input is read and
                                discarded for at most this long before close(), so the
                                client reads the reply instead of a reset */
    unsigned max_conns;      /* open connections; at the limit the server stops
                                accepting (others sharing the socket take the clients)
                                and starts again when one closes */
    int accept_pause_ms;     /* EMFILE, ENFILE, ENOBUFS, ENOMEM from accept(): accepting
                                stops for this long, then is tried again */
    unsigned accept_batch;   /* at most this many accept() per wake-up */
    size_t out_high_water;   /* a stream's or WebSocket's queued output above this: the
                                app's on_slow is called (without one, the client is
                                dropped) */
} http_limits_t;

/* ---- the server ---------------------------------------------------------------- */

/* Called for each complete request (headers and body read). The handler
 * answers now (http_reply, http_stream_start, http_ws_accept, http_req_abort)
 * or keeps `req` and answers later from another event (a timer, a bus
 * alert): a held request. While a request is unanswered the connection reads
 * no further request (pipelined ones wait, in order). A handler that keeps a
 * request should watch it (http_req_watch) to learn that the client left. */
typedef void (*http_handler_t)(http_req_t *req, void *ctx);

/* A base given event_base_priority_init(base, HTTP_PRIORITIES) before any
 * event is made on it lets the server write streaming and WebSocket output
 * at its lowest priority: after the events at hand, so a busy loop sends
 * several turns' output per connection in one system call, at most
 * HTTP_FLUSH_MAX_US after it was queued. On a base without, output is
 * written at the end of the loop turn that queued it. Events of the app
 * keep the default priority (the middle one). */
#define HTTP_PRIORITIES 3
#define HTTP_FLUSH_MAX_US 2000

/* A new server on `base` with limits `lim` (NULL: all defaults) copied in,
 * calling on_request(req, ctx) for each request. It accepts nothing until
 * http_server_listen(). NULL on failure: SHK_EINVAL (a bad limit, named),
 * SHK_ENOMEM. */
http_server_t *http_server_new(struct event_base *base, const http_limits_t *lim,
                               http_handler_t on_request, void *ctx);

/* Where the layer's log lines go (default: nowhere). Levels are SHK_LOG_*;
 * lines carry no newline and no request data unescaped. What is logged:
 * one WARN line per episode of accept() failing for lack of descriptors or
 * memory (an episode lasts until accept() has taken every waiting client,
 * however many pauses that needs), ERR when a
 * listener fails otherwise (it is then left off). */
void http_server_set_log(http_server_t *srv, shk_log_handler_t fn, void *ctx);

/* Accept connections from `listen_fd`, an already bound and listening
 * socket, made non-blocking by this call. The server never closes it; the
 * caller must keep it open until the server is freed or drained. May be
 * called for several sockets. SHK_EINVAL (not a listening socket), SHK_EPERM
 * (draining), SHK_ENOMEM, SHK_ESYS. */
int http_server_listen(http_server_t *srv, int listen_fd);

/* Graceful stop. Now: stop accepting; close idle keep-alive connections
 * (after any reply still being written); mark every other connection to
 * close after its current response, which carries `Connection: close`; call
 * each watched request's on_drain (a held or streaming request: the app
 * answers or writes a last event and ends the stream); end streams nobody
 * watches for drain; send a WebSocket close (1001) after its on_drain. A
 * request whose bytes are still arriving is read and answered in full, and
 * so is the first request of a connection accepted but silent so far, if it
 * comes within linger_ms.
 * Then, from the event loop, done(ctx) once no connection is left (lingering
 * closes included, so at most linger_ms after the last response). Requests
 * held without on_drain keep their connection until the app answers them:
 * free the server after a deadline of your own to bound the stop. Calling it
 * again replaces done. The server stays allocated: free it after done. */
void http_server_drain(http_server_t *srv, void (*done)(void *ctx), void *ctx);

/* Fast stop: close every connection now, calling on_close of each request
 * or WebSocket the app holds, free them and the server. Listening sockets
 * stay open. After it no pointer from this server is valid (detached
 * requests excepted: finishing them only frees them). Not from inside one of
 * the server's callbacks, but drain's done. NULL is a no-op. */
void http_server_free(http_server_t *srv);

/* Counters since the server was created. */
typedef struct http_stats_s {
    unsigned conns;          /* open now (lingering ones included) */
    uint64_t accepted;       /* connections accepted */
    uint64_t accept_full;    /* wake-ups that stopped at accept_batch accepts */
    uint64_t requests;       /* requests handed to the handler */
    uint64_t refused;        /* requests the layer answered itself (400, 408, 413, ...) */
    uint64_t accept_pauses;  /* times accepting was paused (EMFILE and the like) */
    uint64_t accept_episodes;/* runs of such pauses; one log line each */
    unsigned starved;        /* 1 while such an episode lasts */
    uint64_t dropped;        /* connections dropped: send timeout, slow client, reset */
} http_stats_t;

void http_server_stats(const http_server_t *srv, http_stats_t *st);

/* ---- requests -------------------------------------------------------------------- */

/* A request is valid from the handler's call until the app finishes it
 * (http_reply, http_stream_end, http_ws_accept or http_req_abort returns) or,
 * when the client leaves first, until its on_close returns. If the client
 * leaves a request nobody watches, it stays valid, detached: every call on
 * it fails with SHK_ENOENT, and the finishing call frees it. Strings
 * returned are owned by the request and NUL-terminated. */

/* "GET", "HEAD", "POST", ... */
const char *http_req_method(const http_req_t *req);

/* 10 for HTTP/1.0, 11 for HTTP/1.1. */
int http_req_version(const http_req_t *req);

/* The request target as received ("/a%20b?x=1"), less a fragment ("#...")
 * if a client sent one. */
const char *http_req_target(const http_req_t *req);

/* The target's path, percent-decoded ("+" stays "+"), cached in the request.
 * NULL with SHK_EINVAL if an escape is bad (not %XX) or decodes to NUL, or
 * the target has no path ("*", authority form). Not normalised: "/../" stays. */
const char *http_req_path(http_req_t *req);

/* The raw query after '?', or NULL if none. */
const char *http_req_query(const http_req_t *req);

/* The first argument `name` of the query (names compared after decoding),
 * its value decoded as a form ("+" is a space) into *value, owned by the
 * request. SHK_OK; SHK_ENOENT if absent (*value NULL); SHK_EINVAL if its
 * name or value has a bad escape or a NUL. "?a&b=" gives "" for both. */
int http_req_arg(http_req_t *req, const char *name, const char **value);

/* The first header `name` (case-insensitive), or NULL. Values are as sent,
 * without the surrounding blanks. */
const char *http_req_header(const http_req_t *req, const char *name);

/* Header lines, in order: count, and the i-th (SHK_ERANGE past the end). */
unsigned http_req_header_count(const http_req_t *req);
int http_req_header_at(const http_req_t *req, unsigned i, const char **name,
                       const char **value);

/* The body (never NULL: "" when empty) and its length. */
const void *http_req_body(const http_req_t *req, size_t *len);

/* The client's address as text ("127.0.0.1", "::1"; "" for a UNIX socket)
 * and as a sockaddr (its length in *len). */
const char *http_req_peer(const http_req_t *req);
const struct sockaddr *http_req_peer_addr(const http_req_t *req, socklen_t *len);

/* What a held or streaming request wants to hear. Each may be NULL. */
typedef struct http_req_cbs_s {
    /* The client went away (EOF, reset, send timeout, slow drop, server
     * freed) before the response was finished. The request is freed when it
     * returns: drop every pointer to it; no reply call is allowed in it. */
    void (*on_close)(http_req_t *req, void *ctx);
    /* The server is draining: answer, or write a last event and end the
     * stream, soon. Without it a stream is ended by the layer and a held
     * request is left to finish on its own. */
    void (*on_drain)(http_req_t *req, void *ctx);
    /* The response's queued output went above out_high_water (`queued`
     * bytes): the client does not read fast enough. Called once per rise;
     * re-armed when the output is empty again. The app may drop it
     * (http_req_abort) or go on (memory is then its concern). Without it,
     * the layer drops the client (on_close is called). */
    void (*on_slow)(http_req_t *req, size_t queued, void *ctx);
} http_req_cbs_t;

/* Watch `req` with `cbs` (copied) and `ctx`; again to change them. */
void http_req_watch(http_req_t *req, const http_req_cbs_t *cbs, void *ctx);

/* The connection closes after this request's response (which says
 * `Connection: close`). Call before the reply starts. */
void http_req_set_close(http_req_t *req);

/* Output bytes queued on the request's connection, not yet taken by the
 * kernel. */
size_t http_req_queued(const http_req_t *req);

/* Drop the request and its connection now (no more bytes are written, no
 * on_close). The request is freed. */
void http_req_abort(http_req_t *req);

/* ---- responses ---------------------------------------------------------------------- */

/* Extra headers are given as a NULL-terminated list of name, value pairs:
 * (const char *[]){"Content-Type", "text/plain", NULL}; NULL for none. A
 * name must be a token and a value must hold no CR, LF or other control
 * byte but tab; Content-Length, Transfer-Encoding, Connection, Date and
 * Upgrade are the layer's own. Any breach is SHK_EINVAL and nothing is sent. */

/* A whole response: status (200-599), headers, and body[0..len) with a
 * Content-Length (no body for HEAD, 204 and 304). The request is finished
 * (freed) on SHK_OK and on SHK_ENOENT (detached). SHK_EINVAL (bad status or
 * header, nothing sent: the request is still the app's), SHK_EPERM (a
 * response was already started), SHK_ENOMEM. */
int http_reply(http_req_t *req, int status, const char *const *headers, const void *body,
               size_t len);

/* http_reply with a text/plain body: printf-style. */
int http_reply_text(http_req_t *req, int status, const char *fmt, ...) SHK_PRINTF(3, 4);

/* Start a streamed response: status line and headers now, body by
 * http_stream_write, end by http_stream_end. `content_type` may be NULL.
 * HTTP/1.1: chunked; HTTP/1.0: no length, the connection closes at the end.
 * SHK_EINVAL, SHK_EPERM, SHK_ENOENT, SHK_ENOMEM as for http_reply; the
 * request stays the app's until http_stream_end. */
int http_stream_start(http_req_t *req, int status, const char *content_type,
                      const char *const *headers);

/* Queue data[0..len) (len 0: nothing) on a started stream. It is always
 * queued on SHK_OK; if the queue then passes out_high_water, on_slow runs
 * (before this returns) or, without one, the client is dropped: on_close
 * runs and SHK_ENOENT is returned, and the request is freed unless it was
 * unwatched (then it is detached). SHK_EPERM (no stream), SHK_ENOENT
 * (client gone), SHK_ENOMEM. */
int http_stream_write(http_req_t *req, const void *data, size_t len);

/* End the stream (the last chunk, or the close on 1.0) and finish the
 * request (freed). SHK_OK; SHK_ENOENT if the client was gone (freed too);
 * SHK_EPERM if no stream was started (not freed). */
int http_stream_end(http_req_t *req);

/* ---- helpers ---------------------------------------------------------------------------- */

/* The standard reason phrase of `status` ("Not Found"; "Unknown" if none). */
const char *http_reason(int status);

/* Percent-decode in[0..len) into out (NUL-terminated; cap >= len + 1 is
 * always enough), '+' decoded as a space when `form` is set. *outlen gets
 * the decoded length. SHK_EINVAL for '%' not followed by two hex digits, or
 * a NUL (raw or %00) anywhere; SHK_ERANGE if cap is too small. */
int http_decode(const char *in, size_t len, int form, char *out, size_t cap, size_t *outlen);

/* Copy in[0..len) into out for a log line: bytes below 0x20, 0x7f and above,
 * '"' and '\\' become \xHH, so a decoded "%0A" cannot start a forged line.
 * out is always NUL-terminated (cap >= 1); a copy that does not fit ends
 * with "..." inside cap. Returns the length the whole escaped copy needs
 * (excluding the NUL), like snprintf. */
size_t http_log_escape(char *out, size_t cap, const void *in, size_t len);

#endif
