/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * http_ws.c: WebSocket on an HTTP connection: the RFC 6455 handshake
 * (checked, then 101 with Sec-WebSocket-Accept = base64(SHA-1(key + GUID))
 * from nettle), and wslay's event API glued to the connection's buffers:
 * wslay reads frames from the input buffer and writes them to the output
 * buffer, answers pings, checks message sizes and does the close handshake;
 * this file tells the app and closes the TCP connection when it is over.
 */
#include "http_internal.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <nettle/base64.h>
#include <nettle/sha1.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <wslay/wslay.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/* ---- the handshake ------------------------------------------------------------------- */

/* 1 if the comma-separated list `v` holds `token` (case-insensitive). */
static int has_token(const char *v, const char *token)
{
    size_t tl = strlen(token);
    while (v && *v) {
        v += strspn(v, " \t,");
        size_t n = strcspn(v, ",");
        size_t k = n;
        while (k > 0 && (v[k - 1] == ' ' || v[k - 1] == '\t'))
            k--;
        if (k == tl && strncasecmp(v, token, tl) == 0)
            return 1;
        v += n;
    }
    return 0;
}

int http_req_is_websocket(const http_req_t *req)
{
    return req && req->method == HTTP_GET && has_token(http_req_header(req, "upgrade"), "websocket");
}

/* A key is the base64 of 16 bytes: 22 characters of the alphabet and "==". */
static int key_ok(const char *key)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (!key || strlen(key) != 24 || strcmp(key + 22, "==") != 0)
        return 0;
    for (int i = 0; i < 22; i++)
        if (!strchr(b64, key[i]) || !key[i])
            return 0;
    /* the last character before the padding carries 2 bits: its low 4 are 0 */
    return (strchr(b64, key[21]) - b64) % 16 == 0;
}

static void ws_accept_value(const char *key, char out[BASE64_ENCODE_RAW_LENGTH(SHA1_DIGEST_SIZE) + 1])
{
    struct sha1_ctx sha;
    uint8_t digest[SHA1_DIGEST_SIZE];
    sha1_init(&sha);
    sha1_update(&sha, strlen(key), (const uint8_t *)key);
    sha1_update(&sha, strlen(WS_GUID), (const uint8_t *)WS_GUID);
    sha1_digest(&sha, sizeof digest, digest);
    base64_encode_raw(out, sizeof digest, digest);
    out[BASE64_ENCODE_RAW_LENGTH(SHA1_DIGEST_SIZE)] = '\0';
}

/* ---- wslay's callbacks ------------------------------------------------------------------ */

static ssize_t ws_recv(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags,
                       void *user)
{
    http_ws_t *ws = user;
    (void)flags;
    int n = ws->conn ? evbuffer_remove(http_conn_input(ws->conn), buf, len) : -1;
    if (n <= 0) {
        wslay_event_set_error(ctx, n == 0 ? WSLAY_ERR_WOULDBLOCK : WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return n;
}

static ssize_t ws_send(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags,
                       void *user)
{
    http_ws_t *ws = user;
    (void)flags;
    if (!ws->conn || evbuffer_add(http_conn_output(ws->conn), data, len) != 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    return (ssize_t)len;
}

static void ws_msg(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg,
                   void *user)
{
    http_ws_t *ws = user;
    (void)ctx;
    if (ws->over || !ws->cbs.on_message)
        return;
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME)
        ws->cbs.on_message(ws, arg->opcode == WSLAY_TEXT_FRAME ? HTTP_WS_TEXT : HTTP_WS_BINARY,
                           arg->msg, arg->msg_length, ws->cb_ctx);
}

static const struct wslay_event_callbacks ws_callbacks = {
    .recv_callback = ws_recv,
    .send_callback = ws_send,
    .on_msg_recv_callback = ws_msg,
};

/* ---- life ---------------------------------------------------------------------------------- */

void http_ws_gone(http_conn_t *c, int code)
{
    http_ws_t *ws = c->ws;
    if (!ws)
        return;
    c->ws = NULL;
    ws->conn = NULL;
    if (!ws->over) {
        ws->over = 1;
        if (ws->cbs.on_close)
            ws->cbs.on_close(ws, code, ws->cb_ctx);
    }
    if (ws->in_recv) {
        ws->orphan = 1; /* wslay is still using its context */
        return;
    }
    wslay_event_context_free(ws->ctx);
    free(ws);
}

/* Send what wslay queued; when neither side has more to say, the
 * WebSocket is over: tell the app and close the TCP connection after our
 * last frame. */
static void ws_pump(http_conn_t *c)
{
    http_ws_t *ws = c->ws;
    if (!ws || c->dead)
        return;
    if (wslay_event_send(ws->ctx) != 0) {
        c->srv->st.dropped++;
        http_conn_drop(c, 1006);
        return;
    }
    if (wslay_event_want_read(ws->ctx) || wslay_event_want_write(ws->ctx))
        return;
    int code = wslay_event_get_close_received(ws->ctx)
                   ? wslay_event_get_status_code_received(ws->ctx)
                   : wslay_event_get_status_code_sent(ws->ctx);
    http_ws_gone(c, code);
    http_conn_close_after_output(c);
}

void http_ws_read(http_conn_t *c)
{
    http_ws_t *ws = c->ws;
    if (!ws)
        return;
    http_conn_hold(c);
    ws->in_recv = 1;
    int rc = wslay_event_recv(ws->ctx); /* may call on_message, which may drop c */
    ws->in_recv = 0;
    if (ws->orphan) {
        wslay_event_context_free(ws->ctx);
        free(ws);
    } else if (rc != 0) {
        c->srv->st.dropped++;
        http_conn_drop(c, 1006);
    } else {
        ws_pump(c);
        if (c->ws && !c->dead)
            http_conn_check_slow(c);
    }
    http_conn_release(c);
}

void http_ws_timeout(http_conn_t *c)
{
    /* our close went unanswered for linger_ms */
    http_conn_drop(c, 1006);
}

void http_ws_drain(http_conn_t *c)
{
    http_ws_t *ws = c->ws;
    http_conn_hold(c);
    if (ws->cbs.on_drain)
        ws->cbs.on_drain(ws, ws->cb_ctx);
    if (c->ws == ws && !c->dead && !wslay_event_get_close_sent(ws->ctx))
        http_ws_close(ws, 1001, "server going away");
    http_conn_release(c);
}

http_ws_t *http_ws_accept(http_req_t *req, const http_ws_cbs_t *cbs, void *ctx)
{
    static const char *const v13[] = {"Sec-WebSocket-Version", "13", "Content-Type",
                                      "text/plain; charset=utf-8", NULL};
    static const char t426[] = "426 Upgrade Required: only WebSocket version 13 is served\n";
    char acc[BASE64_ENCODE_RAW_LENGTH(SHA1_DIGEST_SIZE) + 1];
    if (!req || req->in_close_cb) {
        shk_error(SHK_EPERM, "http_ws_accept: no request, or inside on_close");
        return NULL;
    }
    if (!req->conn) {
        http_req_free(req);
        shk_error(SHK_ENOENT, "http_ws_accept: the client has gone away");
        return NULL;
    }
    if (req->state != HR_APP) {
        shk_error(SHK_EPERM, "http_ws_accept: a response was already started");
        return NULL;
    }
    const char *why = NULL;
    if (req->method != HTTP_GET || req->version != 11)
        why = "a WebSocket handshake is a GET on HTTP/1.1";
    else if (!has_token(http_req_header(req, "upgrade"), "websocket"))
        why = "no \"Upgrade: websocket\"";
    else if (!has_token(http_req_header(req, "connection"), "upgrade"))
        why = "no \"Connection: upgrade\"";
    else if (!http_req_header(req, "sec-websocket-version") ||
             strcmp(http_req_header(req, "sec-websocket-version"), "13") != 0) {
        http_reply(req, 426, v13, t426, sizeof t426 - 1);
        shk_error(SHK_EINVAL, "http_ws_accept: WebSocket version is not 13");
        return NULL;
    } else if (!key_ok(http_req_header(req, "sec-websocket-key")))
        why = "Sec-WebSocket-Key is not 16 bytes in base64";
    if (why) {
        http_reply_text(req, 400, "400 Bad Request: %s\n", why);
        shk_error(SHK_EINVAL, "http_ws_accept: %s", why);
        return NULL;
    }

    http_conn_t *c = req->conn;
    http_ws_t *ws = calloc(1, sizeof *ws);
    if (!ws || wslay_event_context_server_init(&ws->ctx, &ws_callbacks, ws) != 0) {
        free(ws);
        http_reply_text(req, 500, "500 Internal Server Error: out of memory\n");
        shk_error(SHK_ENOMEM, "http_ws_accept: out of memory");
        return NULL;
    }
    wslay_event_config_set_max_recv_msg_length(ws->ctx, c->srv->lim.max_body);
    if (cbs)
        ws->cbs = *cbs;
    ws->cb_ctx = ctx;
    ws->conn = c;
    ws_accept_value(http_req_header(req, "sec-websocket-key"), acc);
    evbuffer_add_printf(http_conn_output(c),
                        "HTTP/1.1 101 Switching Protocols\r\n%sUpgrade: websocket\r\n"
                        "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
                        http_srv_date(c->srv), acc);
    c->req = NULL;
    http_req_free(req);
    c->nreq++;
    c->ws = ws;
    c->state = HC_WS;
    c->close_after = 0;
    evtimer_del(c->timer);
    if (evbuffer_get_length(http_conn_input(c)) > 0)
        http_conn_schedule(c); /* frames sent right behind the handshake */
    if (c->srv->draining)
        http_ws_drain(c);
    return c->ws == ws ? ws : NULL;
}

int http_ws_send(http_ws_t *ws, int type, const void *data, size_t len)
{
    if (!ws || ws->over || !ws->conn)
        return shk_error(SHK_ENOENT, "http_ws_send: the WebSocket is over");
    if (type != HTTP_WS_TEXT && type != HTTP_WS_BINARY)
        return shk_error(SHK_EINVAL, "http_ws_send: type %d", type);
    if (wslay_event_get_close_sent(ws->ctx) || wslay_event_get_close_received(ws->ctx))
        return shk_error(SHK_EPERM, "http_ws_send: the WebSocket is closing");
    struct wslay_event_msg m = {
        .opcode = type == HTTP_WS_TEXT ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME,
        .msg = data,
        .msg_length = len,
    };
    int rc = wslay_event_queue_msg(ws->ctx, &m);
    if (rc == WSLAY_ERR_NOMEM)
        return shk_error(SHK_ENOMEM, "http_ws_send: out of memory");
    if (rc != 0)
        return shk_error(SHK_EPERM, "http_ws_send: wslay refused the message (%d)", rc);
    http_conn_t *c = ws->conn;
    http_conn_hold(c);
    ws_pump(c);
    int gone = c->dead || c->ws != ws || http_conn_check_slow(c);
    http_conn_release(c);
    return gone ? shk_error(SHK_ENOENT, "http_ws_send: the client was dropped") : SHK_OK;
}

int http_ws_ping(http_ws_t *ws, const void *data, size_t len)
{
    if (!ws || ws->over || !ws->conn)
        return shk_error(SHK_ENOENT, "http_ws_ping: the WebSocket is over");
    if (len > 125 || (len && !data))
        return shk_error(SHK_EINVAL, "http_ws_ping: a payload of %zu bytes (at most 125)", len);
    if (wslay_event_get_close_sent(ws->ctx) || wslay_event_get_close_received(ws->ctx))
        return shk_error(SHK_EPERM, "http_ws_ping: the WebSocket is closing");
    struct wslay_event_msg m = {.opcode = WSLAY_PING, .msg = data, .msg_length = len};
    int rc = wslay_event_queue_msg(ws->ctx, &m);
    if (rc == WSLAY_ERR_NOMEM)
        return shk_error(SHK_ENOMEM, "http_ws_ping: out of memory");
    if (rc != 0)
        return shk_error(SHK_EPERM, "http_ws_ping: wslay refused the ping (%d)", rc);
    http_conn_t *c = ws->conn;
    http_conn_hold(c);
    ws_pump(c);
    int gone = c->dead || c->ws != ws || http_conn_check_slow(c);
    http_conn_release(c);
    return gone ? shk_error(SHK_ENOENT, "http_ws_ping: the client was dropped") : SHK_OK;
}

int http_ws_close(http_ws_t *ws, int code, const char *reason)
{
    size_t rl = reason ? strlen(reason) : 0;
    if (!ws || ws->over || !ws->conn)
        return shk_error(SHK_ENOENT, "http_ws_close: the WebSocket is over");
    if (code < 1000 || code > 4999 || code == 1004 || code == 1005 || code == 1006 ||
        code == 1015 || rl > 123)
        return shk_error(SHK_EINVAL, "http_ws_close: code %d or reason of %zu bytes", code, rl);
    if (wslay_event_get_close_sent(ws->ctx))
        return shk_error(SHK_EPERM, "http_ws_close: already closing");
    if (wslay_event_queue_close(ws->ctx, (uint16_t)code, (const uint8_t *)reason, rl) != 0)
        return shk_error(SHK_EPERM, "http_ws_close: wslay refused the close");
    http_conn_t *c = ws->conn;
    http_conn_hold(c);
    http_conn_set_timer(c, c->srv->lim.linger_ms); /* for the peer's close */
    ws_pump(c);
    http_conn_release(c);
    return SHK_OK;
}

const char *http_ws_peer(const http_ws_t *ws)
{
    return ws && ws->conn ? ws->conn->peer_text : "";
}
