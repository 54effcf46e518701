/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * push_pub.c: push-stream's publisher location (POST/PUT publish with
 * Event-Id and Event-Type, GET the channel's info, DELETE in admin mode,
 * OPTIONS for CORS; with channels_redis a publish goes through Redis,
 * push_redis.c), the dispatch of a request to its location's handler,
 * and the reply helpers every handler shares (text and JSON bodies with
 * push_stream_allowed_origins' headers, a location's channel id).
 */
#include "push.h"

#include "http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------ */

unsigned push_cors(const push_loc_t *pl, int publisher, const char **hdr)
{
    unsigned n = 0;
    if (!pl->origins)
        return 0;
    hdr[n++] = "Access-Control-Allow-Origin";
    hdr[n++] = pl->origins;
    hdr[n++] = "Access-Control-Allow-Methods";
    hdr[n++] = publisher ? "GET, POST, PUT, DELETE" : "GET";
    hdr[n++] = "Access-Control-Allow-Headers";
    hdr[n++] = "If-Modified-Since,If-None-Match,Etag,Event-Id,Event-Type,Last-Event-Id";
    hdr[n++] = "Access-Control-Expose-Headers";
    hdr[n++] = "Etag,Last-Modified";
    return n;
}

static void reply_with(http_req_t *req, const push_loc_t *pl, int status, const char *type,
                       const void *body, size_t len)
{
    const char *hdr[16];
    unsigned n = 0;
    hdr[n++] = "Content-Type";
    hdr[n++] = type;
    n += push_cors(pl, pl->kind == PUSH_PUBLISHER, hdr + n);
    hdr[n] = NULL;
    if (http_reply(req, status, hdr, body, len) == SHK_EINVAL)
        http_reply_text(req, 500, "the reply's headers were refused\n");
}

void push_reply_text(http_req_t *req, const push_loc_t *pl, int status, const char *text)
{
    push_buf_t b = {0};
    push_buf_str(&b, text);
    push_buf_str(&b, "\n");
    reply_with(req, pl, status, "text/plain; charset=utf-8", b.p ? b.p : "", b.len);
    push_buf_free(&b);
}

void push_reply_json(http_req_t *req, const push_loc_t *pl, int status, const push_buf_t *b)
{
    if (b->failed) {
        push_reply_text(req, pl, 500, "Out of memory.");
        return;
    }
    reply_with(req, pl, status, "application/json", b->p ? b->p : "", b->len);
}

void push_info_json(push_buf_t *b, const shk_chan_info_t *in)
{
    push_buf_str(b, "{\"channel\": ");
    push_buf_json(b, in->id, strlen(in->id));
    push_buf_printf(b,
                    ", \"published_messages\": %llu, \"stored_messages\": %u, "
                    "\"subscribers\": %u}",
                    (unsigned long long)in->published, in->stored, in->subscribers);
}

static int req_arg(void *ctx, const char *name, const char **value)
{
    return http_req_arg(ctx, name, value);
}

void push_eval_path(http_req_t *req, const push_loc_t *pl, const push_match_t *m,
                    const char *dflt, push_buf_t *out)
{
    push_value_eval(out, pl->path ? pl->path : dflt, m->path, m->caps, req_arg, req);
}

static void options_reply(http_req_t *req, const push_loc_t *pl)
{
    const char *hdr[16];
    unsigned n = push_cors(pl, pl->kind == PUSH_PUBLISHER, hdr);
    hdr[n] = NULL;
    http_reply(req, 200, hdr, "", 0);
}

/* ---- the publisher --------------------------------------------------------------------- */

static size_t max_id(const push_srv_t *ps)
{
    return ps->pm->opts.max_id_len ? ps->pm->opts.max_id_len : SHK_CHAN_ID_MAX;
}

/* A status and text for a store error. */
static int store_status(int rc, const char **text)
{
    switch (rc) {
    case SHK_EINVAL:
    case SHK_ERANGE: *text = shk_last_errmsg(); return 400;
    case SHK_EAGAIN: *text = "Number of channels were exceeded."; return 403;
    case SHK_ENOMEM:
        *text = "The channel store is full: the message could not be stored even after the "
                "oldest stored messages were dropped.";
        return 507;
    case SHK_ENOENT: *text = "Channel not found."; return 404;
    default: *text = shk_last_errmsg(); return 500;
    }
}

void push_pub_handle(push_srv_t *ps, http_req_t *req, const push_loc_t *pl,
                     const push_match_t *m)
{
    const char *meth = http_req_method(req), *text;
    push_buf_t id = {0}, out = {0};
    shk_chan_info_t info;
    int rc, post = !strcmp(meth, "POST") || !strcmp(meth, "PUT");

    if (!strcmp(meth, "OPTIONS")) {
        options_reply(req, pl);
        return;
    }
    if (!post && strcmp(meth, "GET") && strcmp(meth, "HEAD") && strcmp(meth, "DELETE")) {
        const char *allow[] = {"Allow", pl->admin ? "GET, POST, PUT, DELETE" : "GET, POST, PUT",
                               NULL};
        http_reply(req, 405, allow, "Method Not Allowed\n", 19);
        return;
    }
    if (!strcmp(meth, "DELETE") && !pl->admin) {
        const char *allow[] = {"Allow", "GET, POST, PUT", NULL};
        http_reply(req, 405, allow, "DELETE needs push_stream_publisher admin.\n", 42);
        return;
    }
    push_eval_path(req, pl, m, "$arg_id", &id);
    if (id.failed) {
        push_reply_text(req, pl, 500, "Out of memory.");
        goto out;
    }
    if (!id.len) {
        push_reply_text(req, pl, 400, "No channel id provided.");
        goto out;
    }
    if ((rc = shk_chan_check_id(id.p, max_id(ps), NULL)) != SHK_OK) {
        push_buf_printf(&out, "Invalid channel id: %s.", shk_last_errmsg());
        push_reply_text(req, pl, 400, out.p ? out.p : "Invalid channel id.");
        goto out;
    }
    if (!ps->ch) {
        push_reply_text(req, pl, 500, "No channel store (push_stream_shared_memory_size).");
        goto out;
    }
    if (post) {
        size_t len, cap = pl->max_body ? pl->max_body : ps->pm->max_body;
        const void *body = http_req_body(req, &len);
        if (len > cap) {
            push_buf_printf(&out, "The message is %zu bytes, larger than the %zu this location "
                                  "takes (client_max_body_size).",
                            len, cap);
            push_reply_text(req, pl, 413, out.p ? out.p : "Message too large.");
            goto out;
        }
        if (push_redis_on(ps)) { /* held until Redis answers (push_redis.c) */
            push_redis_publish(ps, req, pl, id.p, body, len);
            goto out;
        }
        rc = shk_chan_publish(ps->ch, id.p, body, len, http_req_header(req, "Event-Id"),
                              http_req_header(req, "Event-Type"), &info);
        if (rc == SHK_OK && !pl->info_on_publish) {
            push_reply_text(req, pl, 200, "");
            goto out;
        }
    } else if (!strcmp(meth, "DELETE")) {
        rc = shk_chan_delete(ps->ch, id.p);
        if (rc == SHK_OK) {
            /* with channels_redis, this instance's copy only (docs/pushstream.md) */
            push_reply_text(req, pl, 200,
                            push_redis_on(ps) ? "Channel deleted on this instance (Redis and "
                                                "the other instances keep it)."
                                              : "Channel deleted.");
            goto out;
        }
    } else {
        rc = shk_chan_info(ps->ch, id.p, &info);
    }
    if (rc != SHK_OK) {
        int st = store_status(rc, &text);
        if (post && (rc == SHK_EINVAL || rc == SHK_ERANGE))
            push_buf_printf(&out, "Invalid message: %s.", text);
        else
            push_buf_str(&out, text);
        push_reply_text(req, pl, st, out.p ? out.p : "error");
        goto out;
    }
    push_info_json(&out, &info);
    push_buf_str(&out, "\r\n");
    push_reply_json(req, pl, 200, &out);
out:
    push_buf_free(&id);
    push_buf_free(&out);
}

/* ---- dispatch ----------------------------------------------------------------------------- */

void push_handle(push_srv_t *ps, http_req_t *req, const push_loc_t *pl, const push_match_t *m)
{
    if (!strcmp(http_req_method(req), "OPTIONS") && pl->kind != PUSH_PUBLISHER) {
        options_reply(req, pl);
        return;
    }
    switch (pl->kind) {
    case PUSH_PUBLISHER: push_pub_handle(ps, req, pl, m); break;
    case PUSH_SUBSCRIBER: push_sub_handle(ps, req, pl, m); break;
    case PUSH_STATS: push_stats_handle(ps, req, pl, m); break;
    default: push_page_handle(ps, req, pl); break;
    }
}
