/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * http_ws.h: WebSocket (RFC 6455) on the demo's HTTP layer. http_ws_accept
 * checks a request's handshake and answers 101 (Sec-WebSocket-Accept is
 * base64(SHA-1(key + GUID)), computed with nettle); the connection is then
 * framed by wslay (Debian's libwslay-dev): the app sends text or binary
 * messages and receives whole ones; pings are answered, the close handshake
 * is done for it. No extension (permessage-deflate is not offered back) and
 * no subprotocol is negotiated. Messages received are bounded by the
 * server's max_body (larger: close 1009); output by out_high_water (on_slow).
 */
#ifndef DEMO_HTTP_WS_H
#define DEMO_HTTP_WS_H

#include "http.h"

typedef struct http_ws_s http_ws_t;

enum { HTTP_WS_TEXT = 1, HTTP_WS_BINARY = 2 };

typedef struct http_ws_cbs_s {
    /* A whole message (HTTP_WS_TEXT or HTTP_WS_BINARY); data is valid
     * during the call only. */
    void (*on_message)(http_ws_t *ws, int type, const void *data, size_t len, void *ctx);
    /* The WebSocket is over: the close handshake ended (code is the peer's
     * status, 1005 if it gave none), or the connection failed or the client
     * left (1006), or the server was freed (1001). Called exactly once; ws
     * is freed when it returns. */
    void (*on_close)(http_ws_t *ws, int code, void *ctx);
    /* The server is draining: the layer sends close 1001 after this
     * returns (the app may send a last message here). */
    void (*on_drain)(http_ws_t *ws, void *ctx);
    /* Queued output passed out_high_water (once per rise, re-armed when
     * empty). Without it the client is dropped (on_close, 1006). */
    void (*on_slow)(http_ws_t *ws, size_t queued, void *ctx);
} http_ws_cbs_t;

/* 1 if `req` asks for a WebSocket (GET with Upgrade: websocket), else 0. */
int http_req_is_websocket(const http_req_t *req);

/* Check the handshake of `req` and switch its connection to WebSocket with
 * callbacks `cbs` (copied) and `ctx`. The request is finished either way.
 * NULL if refused, after the layer answered: 400 (not GET on HTTP/1.1, no
 * "Upgrade: websocket" or "Connection: upgrade", a Sec-WebSocket-Key that is
 * not 16 bytes in base64), 426 with "Sec-WebSocket-Version: 13" (another
 * version), or on SHK_ENOENT (client gone) / SHK_ENOMEM (500). */
http_ws_t *http_ws_accept(http_req_t *req, const http_ws_cbs_t *cbs, void *ctx);

/* Queue one message (HTTP_WS_TEXT: data should be UTF-8; the layer does not
 * check). SHK_OK; SHK_EINVAL (type); SHK_EPERM (closing: a close was sent
 * or received); SHK_ENOENT if the queue passed out_high_water without an
 * on_slow and the client was dropped (on_close ran: ws is freed); SHK_ENOMEM. */
int http_ws_send(http_ws_t *ws, int type, const void *data, size_t len);

/* Queue a ping frame with a payload of at most 125 bytes (len 0: none); the
 * client's pong is read and dropped by wslay. Errors as http_ws_send, and
 * SHK_EINVAL for a longer payload. */
int http_ws_ping(http_ws_t *ws, const void *data, size_t len);

/* Start the close handshake with `code` (1000-4999) and a reason of at most
 * 123 bytes (may be NULL); on_close follows when the peer answers (or after
 * linger_ms). SHK_EINVAL; SHK_EPERM if already closing. */
int http_ws_close(http_ws_t *ws, int code, const char *reason);

/* The client's address as text, as http_req_peer. */
const char *http_ws_peer(const http_ws_t *ws);

#endif
