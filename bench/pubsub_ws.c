/*
 * pubsub_ws.c: the WebSocket subscriber. The handshake request (a random
 * Sec-WebSocket-Key) and the check of the server's Sec-WebSocket-Accept
 * (SHA-1 and base64 from nettle); then wslay's frame API: frames are
 * parsed from the bytes read as they come, the payload of text and binary
 * frames goes to the message parser piece by piece (no copy of a whole
 * message, no allocation per message), a message ends with its final
 * frame; pings are answered with pongs, a close is answered and ends the
 * subscription. The client's own frames are masked, as RFC 6455 wants.
 */
#include "pubsub.h"

#include <nettle/base64.h>
#include <nettle/sha1.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <wslay/wslay.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

static ps_worker_t *ww; /* the worker feeding wslay now */
static uint64_t mask_state = 0x9e3779b97f4a7c15ull;

static ssize_t ws_recv_cb(uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)flags;
    ps_sub_t *s = ud;
    if (!s->ws_in_len)
        return -1; /* wslay: nothing more now (WSLAY_ERR_WANT_READ) */
    size_t k = len < s->ws_in_len ? len : s->ws_in_len;
    memcpy(buf, s->ws_in, k);
    s->ws_in += k;
    s->ws_in_len -= k;
    return (ssize_t)k;
}

static ssize_t ws_send_cb(const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)flags;
    ps_sub_t *s = ud;
    return ps_conn_write(ww, &s->c, data, len) < 0 ? -1 : (ssize_t)len;
}

/* Masking keys need no secrecy here (the peer is our own server on loopback). */
static int ws_mask_cb(uint8_t *buf, size_t len, void *ud)
{
    (void)ud;
    for (size_t i = 0; i < len; i++) {
        mask_state ^= mask_state << 13;
        mask_state ^= mask_state >> 7;
        mask_state ^= mask_state << 17;
        buf[i] = (uint8_t)mask_state;
    }
    return 0;
}

static const struct wslay_frame_callbacks ws_cbs = {ws_send_cb, ws_recv_cb, ws_mask_cb};

int ps_ws_request(ps_worker_t *w, ps_sub_t *s, char *buf, size_t cap, size_t *len)
{
    (void)w;
    uint8_t raw[16];
    if (getrandom(raw, sizeof raw, 0) != sizeof raw)
        ws_mask_cb(raw, sizeof raw, NULL);
    base64_encode_raw(s->ws_key, sizeof raw, raw); /* 24 characters */
    s->ws_key[BASE64_ENCODE_RAW_LENGTH(sizeof raw)] = 0;
    char path[1100];
    if (ps_url_path(&ps_opt.sub, s->ch, path, sizeof path) < 0)
        return -1;
    int n = snprintf(buf, cap,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n",
                     path, ps_opt.sub.host, s->ws_key);
    if (n < 0 || (size_t)n >= cap)
        return -1;
    *len = (size_t)n;
    return 0;
}

int ps_ws_open(ps_worker_t *w, ps_sub_t *s)
{
    struct sha1_ctx ctx;
    uint8_t digest[SHA1_DIGEST_SIZE];
    char want[BASE64_ENCODE_RAW_LENGTH(SHA1_DIGEST_SIZE) + 1];
    sha1_init(&ctx);
    sha1_update(&ctx, strlen(s->ws_key), (const uint8_t *)s->ws_key);
    sha1_update(&ctx, sizeof WS_GUID - 1, (const uint8_t *)WS_GUID);
    sha1_digest(&ctx, sizeof digest, digest);
    base64_encode_raw(want, sizeof digest, digest);
    want[sizeof want - 1] = 0;
    if (s->ws_accept_len != strlen(want) || memcmp(s->ws_accept, want, s->ws_accept_len)) {
        ps_sub_error(w, s, "WebSocket handshake: Sec-WebSocket-Accept '%.*s', expected '%s'",
                     (int)s->ws_accept_len, s->ws_accept, want);
        return -1;
    }
    if (!s->ws && wslay_frame_context_init(&s->ws, &ws_cbs, s) != 0) {
        ps_sub_error(w, s, "wslay_frame_context_init failed");
        return -1;
    }
    s->ws_open = 1;
    s->up = 1;
    s->ws_frame_got = 0;
    s->ws_ctl_len = 0;
    ps_pp_reset(&s->pp);
    return 0;
}

void ps_ws_free(ps_sub_t *s)
{
    if (s->ws)
        wslay_frame_context_free(s->ws);
    s->ws = NULL;
    s->ws_open = 0;
}

static int ws_send_ctl(ps_sub_t *s, uint8_t opcode, const uint8_t *data, size_t len)
{
    struct wslay_frame_iocb io = {.fin = 1, .opcode = opcode, .mask = 1,
                                  .payload_length = len, .data = data, .data_length = len};
    /* The send callback takes everything at once (it appends to our buffer). */
    return wslay_frame_send(s->ws, &io) == (ssize_t)len ? 0 : -1;
}

/* A whole control frame is in s->ws_ctl. 1 = the peer closed. */
static int ws_control(ps_worker_t *w, ps_sub_t *s, uint8_t opcode)
{
    if (opcode == WSLAY_PING)
        return ws_send_ctl(s, WSLAY_PONG, s->ws_ctl, s->ws_ctl_len);
    if (opcode == WSLAY_CONNECTION_CLOSE) {
        ws_send_ctl(s, WSLAY_CONNECTION_CLOSE, s->ws_ctl, s->ws_ctl_len >= 2 ? 2 : 0);
        if (w->phase < PH_DONE) {
            unsigned code = s->ws_ctl_len >= 2 ? (unsigned)s->ws_ctl[0] << 8 | s->ws_ctl[1] : 0;
            ps_sub_error(w, s, "the server closed the WebSocket (code %u)", code);
            return -1;
        }
        return 1;
    }
    return 0; /* pong */
}

int ps_ws_input(ps_worker_t *w, ps_sub_t *s, const char *p, size_t n)
{
    ww = w;
    s->ws_in = p;
    s->ws_in_len = n;
    for (;;) {
        struct wslay_frame_iocb io;
        ssize_t r = wslay_frame_recv(s->ws, &io);
        if (r == WSLAY_ERR_WANT_READ)
            break;
        if (r < 0) {
            ps_sub_error(w, s, "WebSocket frame error (wslay %zd)", r);
            return -1;
        }
        s->ws_frame_got += io.data_length;
        int done = s->ws_frame_got == io.payload_length;
        if (wslay_is_ctrl_frame(io.opcode)) {
            if (s->ws_ctl_len + io.data_length > sizeof s->ws_ctl)
                return -1; /* wslay refuses control frames over 125 bytes */
            memcpy(s->ws_ctl + s->ws_ctl_len, io.data, io.data_length);
            s->ws_ctl_len += (uint32_t)io.data_length;
            if (done) {
                s->ws_frame_got = 0;
                int rc = ws_control(w, s, io.opcode);
                s->ws_ctl_len = 0;
                if (rc)
                    return rc;
            }
            continue;
        }
        if (io.rsv) {
            ps_sub_error(w, s, "WebSocket frame with reserved bits (no extension was asked)");
            return -1;
        }
        if (io.data_length && ps_pp_feed(w, s, (const char *)io.data, io.data_length) < 0)
            return -1;
        if (done) {
            s->ws_frame_got = 0;
            if (io.fin && ps_pp_end(w, s) < 0)
                return -1;
        }
    }
    return 0;
}
