/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_redis_link.c: the relay's connections to Redis, through hiredis's
 * asynchronous API on the relay's epoll set (the adapter: hiredis's
 * addRead/delRead/addWrite/delWrite/cleanup hooks become epoll changes).
 * The link is made in steps: a first connection (AUTH) asks CLUSTER SLOTS;
 * an error means one server (that connection carries the commands, SELECT
 * picks the database, a second one subscribes), a slot table means a
 * cluster (one command connection per master, the first connection
 * subscribes, cluster PUBLISH reaching every node). Each command connection
 * loads the publish script. Commands are kept with their arguments until
 * answered: MOVED updates the slot's node and resends, ASK resends once
 * after ASKING, NOSCRIPT resends as EVAL. Any lost connection, a connect
 * that takes too long, or a command unanswered for publish_timeout_ms drops
 * the whole link: every command in flight is answered "no answer", and a
 * reconnect follows after a delay doubling from backoff_min_ms to
 * backoff_max_ms. Teardown never runs inside a hiredis callback: callbacks
 * set want_reset, the loop resets after its epoll batch.
 */
#include "shk_redis_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>

/* The publish script (docs/redis.md): KEYS[1] the channel's stream; ARGV:
 * max entries, ttl ms (0: forever), channel id, data, event id, event type,
 * the pub/sub channel. The previous entry's id goes with the announcement,
 * so a relay that missed one notices the gap. */
static const char publish_script[] =
    "local k = KEYS[1]\n"
    "local prev = '0-0'\n"
    "local last = redis.call('XREVRANGE', k, '+', '-', 'COUNT', 1)\n"
    "if last[1] then prev = last[1][1] end\n"
    "local id = redis.call('XADD', k, 'MAXLEN', ARGV[1], '*', 'd', ARGV[4], 'e', ARGV[5], "
    "'t', ARGV[6])\n"
    "local ttl = tonumber(ARGV[2])\n"
    "if ttl > 0 then\n"
    "  local ms = tonumber(string.match(id, '^%d+'))\n"
    "  if ms > ttl then redis.call('XTRIM', k, 'MINID', string.format('%.0f-0', ms - ttl)) end\n"
    "  redis.call('PEXPIRE', k, ttl)\n"
    "end\n"
    "redis.call('PUBLISH', ARGV[7], id .. '\\n' .. prev .. '\\n' .. #ARGV[3] .. '\\n' .. "
    "#ARGV[5] .. '\\n' .. #ARGV[6] .. '\\n' .. ARGV[3] .. ARGV[5] .. ARGV[6] .. ARGV[4])\n"
    "return id\n";

void shk_redis_error(relay_t *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->last_error, sizeof r->last_error, fmt, ap);
    va_end(ap);
}

void shk_redis_set_state(relay_t *r, unsigned state)
{
    if (r->state == state)
        return;
    if (state == SHK_REDIS_DOWN)
        SHK_WRITE_ONCE(r->sh->down_since_ms, shk_time_ms());
    r->state = state;
    SHK_WRITE_ONCE(r->sh->state, state); /* relaxed: a report's snapshot */
}

/* ---- the epoll adapter ---------------------------------------------------------------- */

static void conn_update(rconn_t *c)
{
    struct epoll_event ev = {.events = c->events, .data.ptr = c};
    if (c->dead || c->fd < 0)
        return;
    if (epoll_ctl(c->r->ep, c->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) == 0)
        c->in_epoll = 1;
    else
        shk_log(SHK_LOG_ERR, "redis relay: epoll_ctl: %s", strerror(errno));
}

static void ev_add_read(void *p)
{
    rconn_t *c = p;
    c->events |= EPOLLIN;
    conn_update(c);
}

static void ev_del_read(void *p)
{
    rconn_t *c = p;
    c->events &= ~(uint32_t)EPOLLIN;
    conn_update(c);
}

static void ev_add_write(void *p)
{
    rconn_t *c = p;
    c->events |= EPOLLOUT;
    conn_update(c);
}

static void ev_del_write(void *p)
{
    rconn_t *c = p;
    c->events &= ~(uint32_t)EPOLLOUT;
    conn_update(c);
}

/* hiredis is freeing the context: leave the epoll set; the record is freed
 * after the epoll batch (an event for it may still be in the batch). */
static void ev_cleanup(void *p)
{
    rconn_t *c = p;
    if (c->in_epoll)
        epoll_ctl(c->r->ep, EPOLL_CTL_DEL, c->fd, NULL);
    c->in_epoll = 0;
    c->ac = NULL;
    c->dead = 1;
    c->next_dead = c->r->dead;
    c->r->dead = c;
}

void shk_redis_link_events(rconn_t *c, uint32_t events)
{
    if (!c->dead && c->ac && (events & (EPOLLIN | EPOLLERR | EPOLLHUP)))
        redisAsyncHandleRead(c->ac);
    if (!c->dead && c->ac && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        redisAsyncHandleWrite(c->ac);
}

void shk_redis_link_reap(relay_t *r)
{
    while (r->dead) {
        rconn_t *c = r->dead;
        r->dead = c->next_dead;
        free(c);
    }
}

/* ---- connections ------------------------------------------------------------------------ */

static void forget(relay_t *r, rconn_t *c)
{
    if (r->seed == c)
        r->seed = NULL;
    if (r->sub == c) {
        r->sub = NULL;
        r->subscribed = 0;
    }
    for (unsigned i = 0; i < r->nnodes; i++)
        if (r->nodes[i].conn == c) {
            r->nodes[i].conn = NULL;
            r->nodes[i].ready = 0;
        }
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    rconn_t *c = ac->ev.data;
    if (status == REDIS_OK) {
        c->connected = 1;
        return;
    }
    shk_redis_error(c->r, "cannot connect: %s", ac->errstr);
    forget(c->r, c);
    c->ac = NULL; /* hiredis frees it after this call */
    c->r->want_reset = 1;
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    rconn_t *c = ac->ev.data;
    if (c->closing)
        return; /* our own reset */
    if (status != REDIS_OK)
        shk_redis_error(c->r, "connection lost: %s", ac->errstr ? ac->errstr : "closed");
    else if (!c->r->last_error[0])
        shk_redis_error(c->r, "connection closed");
    forget(c->r, c);
    c->ac = NULL;
    c->r->want_reset = 1;
}

static void cmd_raw(relay_t *r, rconn_t *c, redisCallbackFn *fn, void *priv, const char *fmt, ...)
{
    va_list ap;
    if (!c || !c->ac)
        return;
    va_start(ap, fmt);
    if (redisvAsyncCommand(c->ac, fn, priv, fmt, ap) == REDIS_OK)
        SHK_ADD_SOLE(r->sh->commands, 1);
    va_end(ap);
}

static void on_auth(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    rconn_t *c = ac->ev.data;
    (void)priv;
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        shk_redis_error(c->r, "AUTH refused: %.*s", (int)rep->len, rep->str);
        c->r->want_reset = 1;
    }
}

/* A connection to host:port (or the unix socket when host is NULL), with
 * AUTH queued first. NULL with last_error set. */
static rconn_t *conn_open(relay_t *r, const char *host, int port, int node)
{
    rconn_t *c = calloc(1, sizeof *c);
    redisAsyncContext *ac;
    if (!c) {
        shk_redis_error(r, "out of memory");
        return NULL;
    }
    ac = host ? redisAsyncConnect(host, port) : redisAsyncConnectUnix(r->conf.path);
    if (!ac || ac->err) {
        shk_redis_error(r, "cannot connect to %s:%d: %s", host ? host : r->conf.path, port,
                        ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        free(c);
        return NULL;
    }
    c->r = r;
    c->ac = ac;
    c->fd = ac->c.fd;
    c->node = node;
    ac->ev.data = c;
    ac->ev.addRead = ev_add_read;
    ac->ev.delRead = ev_del_read;
    ac->ev.addWrite = ev_add_write;
    ac->ev.delWrite = ev_del_write;
    ac->ev.cleanup = ev_cleanup;
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    /* The socket is connecting: hiredis learns the outcome on writability. */
    ev_add_write(c);
    if (r->conf.password[0])
        cmd_raw(r, c, on_auth, NULL, "AUTH %s", r->conf.password);
    return c;
}

/* ---- readiness ---------------------------------------------------------------------------- */

static void check_ready(relay_t *r)
{
    if (r->state != SHK_REDIS_CONNECTING || !r->subscribed || !r->nnodes)
        return;
    for (unsigned i = 0; i < r->nnodes; i++)
        if (!r->nodes[i].ready)
            return;
    SHK_WRITE_ONCE(r->sh->nodes, r->nnodes);
    SHK_WRITE_ONCE(r->sh->cluster, (uint32_t)r->cluster);
    if (r->ever_up)
        SHK_ADD_SOLE(r->sh->reconnects, 1);
    r->ever_up = 1;
    r->backoff_ms = 0;
    r->last_error[0] = '\0';
    shk_redis_on_ready(r);
}

static void on_script(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    rconn_t *c = ac->ev.data;
    relay_t *r = c->r;
    (void)priv;
    if (!rep)
        return;
    if (rep->type != REDIS_REPLY_STRING || rep->len >= sizeof r->sha) {
        shk_redis_error(r, "SCRIPT LOAD failed: %.*s", rep->type == REDIS_REPLY_ERROR ? (int)rep->len : 0,
                        rep->type == REDIS_REPLY_ERROR ? rep->str : "");
        r->want_reset = 1;
        return;
    }
    memcpy(r->sha, rep->str, rep->len);
    r->sha[rep->len] = '\0';
    if (c->node >= 0 && (unsigned)c->node < r->nnodes && r->nodes[c->node].conn == c)
        r->nodes[c->node].ready = 1;
    check_ready(r);
}

static void on_select(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    rconn_t *c = ac->ev.data;
    (void)priv;
    if (rep && rep->type == REDIS_REPLY_ERROR) {
        shk_redis_error(c->r, "SELECT %u refused: %.*s", c->r->conf.db, (int)rep->len, rep->str);
        c->r->want_reset = 1;
    }
}

/* The subscriber's replies: the subscription's confirmation, then every
 * announcement. */
static void on_sub(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply, *kind;
    rconn_t *c = ac->ev.data;
    relay_t *r = c->r;
    (void)priv;
    if (!rep || c->dead)
        return;
    if (rep->type == REDIS_REPLY_ERROR) {
        shk_redis_error(r, "SUBSCRIBE refused: %.*s", (int)rep->len, rep->str);
        r->want_reset = 1;
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements != 3 ||
        (kind = rep->element[0])->type != REDIS_REPLY_STRING)
        return;
    if (kind->len == 9 && memcmp(kind->str, "subscribe", 9) == 0) {
        r->subscribed = 1;
        check_ready(r);
    } else if (kind->len == 7 && memcmp(kind->str, "message", 7) == 0 &&
               rep->element[2]->type == REDIS_REPLY_STRING) {
        shk_redis_on_message(r, rep->element[2]->str, rep->element[2]->len);
    }
}

/* A command connection for node i: AUTH (queued by conn_open), SELECT on a
 * single server, SCRIPT LOAD. */
static int node_connect(relay_t *r, unsigned i)
{
    rnode_t *n = &r->nodes[i];
    if (!n->conn)
        n->conn = conn_open(r, r->conf.host[0] ? n->host : NULL, n->port, (int)i);
    if (!n->conn)
        return -1;
    n->conn->node = (int)i;
    if (!r->cluster && r->conf.db)
        cmd_raw(r, n->conn, on_select, NULL, "SELECT %u", r->conf.db);
    cmd_raw(r, n->conn, on_script, NULL, "SCRIPT LOAD %s", publish_script);
    return 0;
}

static void subscribe(relay_t *r, rconn_t *c)
{
    r->sub = c;
    c->node = -1;
    cmd_raw(r, c, on_sub, NULL, "SUBSCRIBE %s", r->pubchan);
}

/* The node of host:port, added (and connected) if new; -1 if full. */
static int node_find(relay_t *r, const char *host, size_t hlen, int port, int add)
{
    for (unsigned i = 0; i < r->nnodes; i++)
        if (r->nodes[i].port == port && strlen(r->nodes[i].host) == hlen &&
            memcmp(r->nodes[i].host, host, hlen) == 0)
            return (int)i;
    if (!add || r->nnodes == REDIS_MAX_NODES || hlen >= sizeof r->nodes[0].host)
        return -1;
    rnode_t *n = &r->nodes[r->nnodes];
    memset(n, 0, sizeof *n);
    memcpy(n->host, host, hlen);
    n->host[hlen] = '\0';
    n->port = port;
    return (int)r->nnodes++;
}

/* CLUSTER SLOTS: [[start, end, [host, port, ...], replicas...], ...] */
static int read_slots(relay_t *r, redisReply *rep)
{
    unsigned covered = 0;
    memset(r->slotmap, 0xff, sizeof r->slotmap);
    for (size_t i = 0; i < rep->elements; i++) {
        redisReply *e = rep->element[i], *m;
        int idx;
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
            e->element[0]->type != REDIS_REPLY_INTEGER ||
            e->element[1]->type != REDIS_REPLY_INTEGER ||
            (m = e->element[2])->type != REDIS_REPLY_ARRAY || m->elements < 2 ||
            m->element[0]->type != REDIS_REPLY_STRING ||
            m->element[1]->type != REDIS_REPLY_INTEGER)
            return shk_error(SHK_EINVAL, "CLUSTER SLOTS: an entry of the wrong shape");
        long long a = e->element[0]->integer, b = e->element[1]->integer,
                  port = m->element[1]->integer;
        if (a < 0 || b < a || b >= REDIS_SLOTS || port < 1 || port > 65535)
            return shk_error(SHK_EINVAL, "CLUSTER SLOTS: slots %lld-%lld port %lld", a, b, port);
        /* An empty host means "the node you asked": the seed's. */
        if (m->element[0]->len)
            idx = node_find(r, m->element[0]->str, m->element[0]->len, (int)port, 1);
        else
            idx = node_find(r, r->conf.host, strlen(r->conf.host), (int)port, 1);
        if (idx < 0)
            return shk_error(SHK_ERANGE, "CLUSTER SLOTS: more than %d masters", REDIS_MAX_NODES);
        for (long long s = a; s <= b; s++) {
            covered += r->slotmap[s] == 0xff;
            r->slotmap[s] = (uint8_t)idx;
        }
    }
    if (covered != REDIS_SLOTS)
        return shk_error(SHK_EAGAIN, "the cluster covers %u of %d slots", covered, REDIS_SLOTS);
    return SHK_OK;
}

static void on_slots(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    rconn_t *c = ac->ev.data;
    relay_t *r = c->r;
    (void)priv;
    if (!rep || c != r->seed)
        return;
    r->seed = NULL;
    if (rep->type == REDIS_REPLY_ERROR && r->want_reset)
        return; /* AUTH failed first */
    if (rep->type == REDIS_REPLY_ERROR) {
        /* Not a cluster: this connection carries the commands. */
        r->cluster = 0;
        r->nnodes = 1;
        memset(&r->nodes[0], 0, sizeof r->nodes[0]);
        snprintf(r->nodes[0].host, sizeof r->nodes[0].host, "%s", r->conf.host);
        r->nodes[0].port = r->conf.port;
        r->nodes[0].conn = c;
        node_connect(r, 0);
        rconn_t *s = conn_open(r, r->conf.host[0] ? r->conf.host : NULL, r->conf.port, -1);
        if (!s) {
            r->want_reset = 1;
            return;
        }
        subscribe(r, s);
        return;
    }
    if (rep->type != REDIS_REPLY_ARRAY) {
        shk_redis_error(r, "CLUSTER SLOTS: unexpected reply type %d", rep->type);
        r->want_reset = 1;
        return;
    }
    r->cluster = 1;
    r->nnodes = 0;
    if (read_slots(r, rep) != SHK_OK) {
        shk_redis_error(r, "%s", shk_last_errmsg());
        r->want_reset = 1;
        return;
    }
    for (unsigned i = 0; i < r->nnodes; i++)
        if (node_connect(r, i) != 0) {
            r->want_reset = 1;
            return;
        }
    subscribe(r, c); /* cluster PUBLISH reaches every node */
}

static void link_connect(relay_t *r)
{
    r->last_error[0] = '\0';
    shk_redis_set_state(r, SHK_REDIS_CONNECTING);
    r->connect_deadline_ms = r->now_ms + r->conf.connect_timeout_ms;
    r->seed = conn_open(r, r->conf.host[0] ? r->conf.host : NULL, r->conf.port, -2);
    if (!r->seed) {
        r->want_reset = 1;
        return;
    }
    cmd_raw(r, r->seed, on_slots, NULL, "CLUSTER SLOTS");
}

/* ---- commands ------------------------------------------------------------------------------ */

rcmd_t *shk_redis_cmd_new(relay_t *r, int argc, const char **argv, const size_t *argvlen)
{
    size_t total = 0;
    rcmd_t *c;
    char *p;
    for (int i = 0; i < argc; i++)
        total += argvlen[i];
    c = calloc(1, sizeof *c + (size_t)argc * (sizeof(char *) + sizeof(size_t)) + total);
    if (!c)
        return NULL;
    c->r = r;
    c->argc = argc;
    c->argv = (char **)(c + 1);
    c->argvlen = (size_t *)(c->argv + argc);
    p = (char *)(c->argvlen + argc);
    for (int i = 0; i < argc; i++) {
        memcpy(p, argv[i], argvlen[i]);
        c->argv[i] = p;
        c->argvlen[i] = argvlen[i];
        p += argvlen[i];
    }
    c->slot = -1;
    return c;
}

static void inflight_unlink(relay_t *r, rcmd_t *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        r->inflight_head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        r->inflight_tail = c->prev;
    c->next = c->prev = NULL;
    r->ninflight--;
}

static void cmd_finish(relay_t *r, rcmd_t *c, redisReply *rep)
{
    c->done(r, c, rep);
    free(c);
}

static void send_to(relay_t *r, rcmd_t *c, int node, int asking);

/* "MOVED 3999 127.0.0.1:6381" / "ASK ...": the node named, added if new. */
static int redirect_node(relay_t *r, const char *s, size_t len)
{
    const char *sp = memchr(s, ' ', len), *addr, *colon;
    if (!sp || !(sp = memchr(sp + 1, ' ', len - (size_t)(sp + 1 - s))))
        return -1;
    addr = sp + 1;
    colon = NULL;
    for (const char *q = s + len; q > addr; q--)
        if (q[-1] == ':') {
            colon = q - 1;
            break;
        }
    if (!colon)
        return -1;
    int port = atoi(colon + 1), before = (int)r->nnodes;
    if (port < 1 || port > 65535)
        return -1;
    int idx = node_find(r, addr, (size_t)(colon - addr), port, 1);
    if (idx >= before && node_connect(r, (unsigned)idx) != 0)
        return -1;
    if (idx >= before)
        r->nodes[idx].ready = 1; /* its SCRIPT LOAD is queued ahead of what follows */
    return idx;
}

static void on_cmd(redisAsyncContext *ac, void *reply, void *priv)
{
    redisReply *rep = reply;
    rcmd_t *c = priv;
    relay_t *r = c->r;
    (void)ac;
    inflight_unlink(r, c);
    if (rep && rep->type == REDIS_REPLY_ERROR && c->redirects < REDIS_MAX_REDIRECTS) {
        int moved = rep->len > 6 && memcmp(rep->str, "MOVED ", 6) == 0;
        int ask = rep->len > 4 && memcmp(rep->str, "ASK ", 4) == 0;
        if (moved || ask) {
            int node = redirect_node(r, rep->str, rep->len);
            if (node >= 0) {
                c->redirects++;
                if (moved && c->slot >= 0)
                    r->slotmap[c->slot] = (uint8_t)node; /* the topology follows */
                send_to(r, c, node, ask);
                return;
            }
        }
        if (rep->len >= 8 && memcmp(rep->str, "NOSCRIPT", 8) == 0 && c->argc > 1 &&
            c->argvlen[0] == 7 && memcmp(c->argv[0], "EVALSHA", 7) == 0) {
            /* The server lost its scripts (a restart, SCRIPT FLUSH): the
             * script itself this time. */
            c->redirects++;
            c->argv[0] = (char *)"EVAL";
            c->argvlen[0] = 4;
            c->argv[1] = (char *)publish_script;
            c->argvlen[1] = sizeof publish_script - 1;
            send_to(r, c, c->node, 0);
            return;
        }
    }
    cmd_finish(r, c, rep);
}

static void send_to(relay_t *r, rcmd_t *c, int node, int asking)
{
    rconn_t *conn = node >= 0 && (unsigned)node < r->nnodes ? r->nodes[node].conn : NULL;
    if (!conn || !conn->ac) {
        cmd_finish(r, c, NULL);
        return;
    }
    if (asking)
        cmd_raw(r, conn, NULL, NULL, "ASKING");
    if (redisAsyncCommandArgv(conn->ac, on_cmd, c, c->argc, (const char **)c->argv,
                              c->argvlen) != REDIS_OK) {
        cmd_finish(r, c, NULL);
        return;
    }
    SHK_ADD_SOLE(r->sh->commands, 1);
    c->node = node;
    c->sent_ms = r->now_ms;
    c->prev = r->inflight_tail;
    c->next = NULL;
    if (r->inflight_tail)
        r->inflight_tail->next = c;
    else
        r->inflight_head = c;
    r->inflight_tail = c;
    r->ninflight++;
}

void shk_redis_cmd_send(relay_t *r, rcmd_t *c)
{
    int node = 0;
    if (r->cluster && c->slot >= 0 && c->slot < REDIS_SLOTS)
        node = r->slotmap[c->slot] == 0xff ? -1 : r->slotmap[c->slot];
    send_to(r, c, node, 0);
}

/* ---- reset and the timers -------------------------------------------------------------------- */

static void conn_free(rconn_t *c)
{
    if (c && c->ac && !c->dead) {
        redisAsyncContext *ac = c->ac;
        c->ac = NULL;
        c->closing = 1;
        redisAsyncFree(ac); /* answers its callbacks with NULL, then cleans up */
    }
}

void shk_redis_link_reset(relay_t *r, const char *why)
{
    rconn_t *conns[REDIS_MAX_NODES + 2];
    unsigned n = 0;
    r->want_reset = 0;
    if (why && !r->last_error[0])
        shk_redis_error(r, "%s", why);
    if (r->state == SHK_REDIS_UP || r->state == SHK_REDIS_SYNCING) {
        shk_log(SHK_LOG_WARN, "redis relay: link down: %s", r->last_error);
        r->fails = 0;
    } else if (r->state == SHK_REDIS_CONNECTING) {
        unsigned k = ++r->fails;
        /* attempts 1, 2, 4, 8 ...: a long outage logs a line now and then */
        if ((k & (k - 1)) == 0)
            shk_log(SHK_LOG_WARN, "redis relay: no link after %u attempt%s: %s", k,
                    k == 1 ? "" : "s", r->last_error);
    }
    /* Collect first: the callbacks run by a free may not change the list
     * under the walk. */
    if (r->seed)
        conns[n++] = r->seed;
    if (r->sub)
        conns[n++] = r->sub;
    for (unsigned i = 0; i < r->nnodes; i++)
        if (r->nodes[i].conn)
            conns[n++] = r->nodes[i].conn;
    r->seed = r->sub = NULL;
    r->subscribed = 0;
    shk_redis_set_state(r, SHK_REDIS_DOWN);
    for (unsigned i = 0; i < n; i++)
        conn_free(conns[i]);
    /* Commands whose connection was already gone: no answer either. */
    while (r->inflight_head) {
        rcmd_t *c = r->inflight_head;
        inflight_unlink(r, c);
        cmd_finish(r, c, NULL);
    }
    r->nnodes = 0;
    SHK_WRITE_ONCE(r->sh->nodes, 0);
    shk_redis_on_reset(r);
    r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : r->conf.backoff_min_ms;
    if (r->backoff_ms > r->conf.backoff_max_ms)
        r->backoff_ms = r->conf.backoff_max_ms;
    r->next_connect_ms = shk_time_ms() + r->backoff_ms;
    r->want_reset = 0; /* what the teardown's callbacks said is done */
}

void shk_redis_link_tick(relay_t *r)
{
    if (r->state == SHK_REDIS_DOWN && r->now_ms >= r->next_connect_ms) {
        link_connect(r);
        return;
    }
    if (r->state == SHK_REDIS_CONNECTING && r->now_ms >= r->connect_deadline_ms) {
        shk_redis_error(r, "no link within %u ms", r->conf.connect_timeout_ms);
        r->want_reset = 1;
    }
    if (r->inflight_head && r->now_ms - r->inflight_head->sent_ms >= r->conf.publish_timeout_ms) {
        shk_redis_error(r, "a command waited %u ms for its answer", r->conf.publish_timeout_ms);
        r->want_reset = 1;
    }
}
