/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_redis.c: channels across instances on a real Redis (Debian's
 * redis-server, started here on a free loopback port in a temporary
 * directory, with an append-only file synced at every write so that what
 * Redis accepted survives a SIGKILL, and stopped at the end). Instances are
 * played by forked processes (a relay, subscribers joined to the store, a
 * publisher through the relay) around their own zones, or are real masters
 * from shk_master_run with the channels_redis directive. Checked: options,
 * ids and slots; a publish on A reaching the subscribers of A, B and C once,
 * in order, with the ids Redis gave; a subscriber that leaves A and resumes
 * on B after its last id; redis-server killed under load and restarted
 * (publishes in the outage refused, every accepted one delivered once, the
 * link back); the relay killed and respawned (it resumes from the store's
 * last ids: nothing missed, nothing twice); real masters; and the same on a
 * 3-master Redis Cluster made with redis-cli --cluster create.
 */
#include "shmkit.h"
#include "shk_redis_internal.h"
#include "util_redis.h"
#include "util_run.h"
#include "util_test.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include <hiredis/hiredis.h>

#define MB (1024u * 1024u)
#define STALL_MS 20000 /* a liveness bound: a process that waits longer fails */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void pause_ms(long ms) /* polling an external process, not a sync */
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static tr_srv_t cl[3];

/* ---- instances played by forked processes ---------------------------------------------- */

#define NSUB 4      /* subscriber processes per instance at most */
#define MAXMSG 4096 /* messages a subscriber records */
#define NPROC 8     /* bus slots: the relay (0), subscribers, a publisher */

typedef struct {
    int n, bad;
    uint64_t got_at_end;
    shk_chan_msgid_t id[MAXMSG];
    int num[MAXMSG];
} rec_t;

typedef struct {
    _Atomic int stop_relay; /* the relay's stop flag */
    _Atomic int stop_subs;
    rec_t rec[NSUB];
    /* the publisher's accepted messages */
    int acked, refused, failed;
    shk_chan_msgid_t ack_id[MAXMSG];
    int ack_num[MAXMSG];
} shared_t;

typedef struct {
    char name[16];
    shk_zones_t *reg;
    shk_zone_t *zone, *bzone;
    shk_bus_t *bus;
    shk_chan_t *ch;
    shared_t *sh;
    pid_t relay;
    shk_redis_opts_t ro;
    char url[64];
} inst_t;

static void inst_make(inst_t *in, const char *name, int port, unsigned max_stored)
{
    shk_chan_opts_t co = {.slots = NPROC, .store_messages = 1, .max_stored = max_stored};
    memset(in, 0, sizeof *in);
    snprintf(in->name, sizeof in->name, "%s", name);
    in->reg = shk_zones_new(name);
    in->zone = shk_zone_add(in->reg, "chan", 16 * MB, "test");
    in->bzone = shk_zone_add(in->reg, "bus", shk_bus_zone_size(NPROC, 64 * 1024) + 4 * MB, "test");
    ck_assert_int_eq(shk_zones_create(in->reg, NULL), SHK_OK);
    in->bus = shk_bus_create(in->bzone, NPROC, 64 * 1024);
    ck_assert_ptr_nonnull(in->bus);
    in->ch = shk_chan_create(in->zone, &co);
    ck_assert_msg(in->ch != NULL, "%s", shk_last_errmsg());
    shk_chan_set_bus(in->ch, in->bus);
    ck_assert_int_eq(shk_redis_setup(in->zone), SHK_OK);
    in->sh = tu_shared(sizeof *in->sh);
    snprintf(in->url, sizeof in->url, "redis://127.0.0.1:%d", port);
    in->ro.url = in->url;
    in->ro.ns = "t";
    in->ro.max_stored = max_stored;
    in->ro.backoff_min_ms = 20;
    in->ro.backoff_max_ms = 200;
    in->ro.publish_timeout_ms = 3000;
}

static void inst_free(inst_t *in)
{
    shk_chan_close(in->ch);
    shk_bus_close(in->bus);
    shk_zones_free(in->reg);
    tu_unshare(in->sh, sizeof *in->sh);
}

static int relay_stop(void *ctx)
{
    shared_t *sh = ctx;
    return atomic_load(&sh->stop_relay);
}

static void relay_start(inst_t *in)
{
    pid_t pid = tu_fork_raw();
    if (pid == 0) {
        TU_CHECK(shk_bus_join(in->bus, 0) == SHK_OK, "%s", shk_last_errmsg());
        int rc = shk_redis_run(in->zone, in->ch, in->bus, &in->ro, relay_stop, in->sh);
        TU_CHECK(rc == SHK_OK, "shk_redis_run: %s", shk_last_errmsg());
        tu_exit(0);
    }
    in->relay = pid;
}

static void relay_stop_wait(inst_t *in)
{
    atomic_store(&in->sh->stop_relay, 1);
    tu_wait_ok(in->relay);
    atomic_store(&in->sh->stop_relay, 0);
    in->relay = 0;
}

/* Wait (polling the zone) until the instance's link is up. */
static void wait_up(inst_t *in)
{
    uint64_t end = now_ms() + STALL_MS;
    shk_redis_stats_t st;
    for (;;) {
        ck_assert_int_eq(shk_redis_stats(in->zone, &st), SHK_OK);
        if (st.state == SHK_REDIS_UP)
            return;
        ck_assert_msg(now_ms() < end, "instance %s: the link never came up (state %s)",
                      in->name, shk_redis_state_name(st.state));
        pause_ms(5);
    }
}

/* ---- subscribers --------------------------------------------------------------------- */

typedef struct {
    rec_t *rec;
    int want;
} subctx_t;

static int msg_num(const shk_chan_msg_t *m)
{
    int v = -1;
    if (m->len >= 2 && ((const char *)m->data)[0] == 'm')
        sscanf((const char *)m->data + 1, "%d", &v);
    return v;
}

static void on_msg(shk_chan_sub_t *s, const shk_chan_msg_t *m, void *ctx)
{
    rec_t *r = ctx;
    (void)s;
    if (r->n >= MAXMSG) {
        r->bad = 1;
        return;
    }
    r->id[r->n] = m->id;
    r->num[r->n] = msg_num(m);
    r->n++;
}

typedef struct {
    inst_t *in;
    int slot, idx, want;
    const char *chans[8];
    unsigned nchans;
    shk_chan_from_t from;
    tu_pipe_t *ready;
} subargs_t;

/* A subscriber process: joins, subscribes, says ready, then delivers until
 * it recorded `want` messages (or is told to stop). */
static int sub_main(void *arg)
{
    subargs_t *a = arg;
    inst_t *in = a->in;
    rec_t *r = &in->sh->rec[a->idx];
    uint64_t end;
    TU_CHECK(shk_bus_join(in->bus, (unsigned)a->slot) == SHK_OK, "%s", shk_last_errmsg());
    TU_CHECK(shk_chan_join(in->ch, in->bus) >= 0, "%s", shk_last_errmsg());
    shk_chan_sub_t *s = shk_chan_sub_new(in->ch, on_msg, r);
    TU_CHECK(s != NULL, "%s", shk_last_errmsg());
    for (unsigned i = 0; i < a->nchans; i++)
        TU_CHECK(shk_chan_sub_add(s, a->chans[i], a->from.mode ? &a->from : NULL) == SHK_OK,
                 "%s", shk_last_errmsg());
    if (a->ready)
        tu_signal(a->ready);
    end = now_ms() + STALL_MS;
    while (r->n < a->want && !atomic_load(&in->sh->stop_subs)) {
        TU_CHECK(now_ms() < end, "instance %s subscriber %d: %d of %d messages", in->name,
                 a->idx, r->n, a->want);
        shk_bus_wait(in->bus, SHK_CHAN_TICK_MS);
        shk_bus_dispatch(in->bus, SHK_BUS_BUDGET);
        shk_chan_tick(in->ch);
    }
    shk_chan_sub_free(s);
    shk_chan_leave(in->ch);
    return 0;
}

static pid_t sub_start(subargs_t *a)
{
    tu_pipe_t p;
    pid_t pid;
    tu_pipe(&p);
    a->ready = &p;
    pid = tu_fork(sub_main, a);
    ck_assert_int_eq(tu_await(&p), 0);
    tu_pipe_close(&p);
    a->ready = NULL;
    return pid;
}

/* ---- the publisher ----------------------------------------------------------------------- */

typedef struct {
    inst_t *in;
    int first, count;   /* message numbers first .. first + count - 1 */
    const char **chans; /* round robin */
    unsigned nchans;
    int retry;          /* 1: a refused message is tried again until accepted */
    tu_pipe_t *half;    /* signalled after count / 2 accepted (may be NULL) */
    tu_pipe_t *go_on;   /* then awaited (may be NULL) */
} pubargs_t;

typedef struct {
    shared_t *sh;
    int num, done, status;
    char msg[200];
} pubreq_t;

static void on_done(int status, const shk_chan_msgid_t *id, const char *msg, void *ctx)
{
    pubreq_t *q = ctx;
    (void)msg;
    q->done = 1;
    q->status = status;
    snprintf(q->msg, sizeof q->msg, "%s", msg);
    if (status == SHK_OK && q->sh->acked < MAXMSG) {
        q->sh->ack_id[q->sh->acked] = *id;
        q->sh->ack_num[q->sh->acked] = q->num;
        q->sh->acked++;
    }
}

/* One message at a time (so the accepted ones are in order), each retried
 * after a refusal when `retry`. */
static int pub_main(void *arg)
{
    pubargs_t *a = arg;
    inst_t *in = a->in;
    shk_redis_t *r;
    uint64_t end = now_ms() + 3 * STALL_MS;
    char data[64];
    TU_CHECK(shk_bus_join(in->bus, NPROC - 1) == SHK_OK, "%s", shk_last_errmsg());
    TU_CHECK((r = shk_redis_client(in->zone, in->bus, &in->ro)) != NULL, "%s",
             shk_last_errmsg());
    for (int k = 0; k < a->count; k++) {
        int num = a->first + k;
        for (;;) {
            pubreq_t q = {in->sh, num, 0, 0, ""};
            int rc;
            snprintf(data, sizeof data, "m%d", num);
            TU_CHECK(now_ms() < end, "publisher: stuck at %d", num);
            rc = shk_redis_publish(r, a->chans[(unsigned)num % a->nchans], data, strlen(data),
                                   NULL, NULL, on_done, &q);
            if (rc == SHK_OK) {
                while (!q.done) {
                    shk_bus_wait(in->bus, SHK_CHAN_TICK_MS);
                    shk_bus_dispatch(in->bus, SHK_BUS_BUDGET);
                    shk_redis_tick(r);
                }
                rc = q.status;
            }
            if (rc == SHK_OK)
                break;
            TU_CHECK(rc == SHK_EAGAIN || rc == SHK_ETIMEDOUT, "publish: %s", shk_err_name(rc));
            if (rc == SHK_EAGAIN)
                in->sh->refused++;
            else
                in->sh->failed++;
            TU_CHECK(a->retry, "publish %d refused: %s", num, q.done ? q.msg : shk_last_errmsg());
            pause_ms(2); /* a retry loop against a link that is down */
        }
        if (a->half && k + 1 == a->count / 2) {
            tu_signal(a->half);
            if (a->go_on)
                TU_CHECK(tu_await(a->go_on) == 0, "parent gone");
        }
    }
    shk_redis_close(r);
    return 0;
}

/* rec has exactly the accepted messages from `from` on, once each, with
 * their ids, in order within each of the `nchans` channels (message m<k>
 * went to channel k % nchans; across channels a cluster keeps no order). */
static void check_rec(const char *who, const rec_t *rec, const shared_t *pub, int from,
                      unsigned nchans)
{
    ck_assert_msg(!rec->bad, "%s: overflow", who);
    ck_assert_msg(rec->n == pub->acked - from, "%s: %d messages, %d accepted", who, rec->n,
                  pub->acked - from);
    for (unsigned c = 0; c < nchans; c++) {
        int j = from;
        for (int i = 0; i < rec->n; i++) {
            if (rec->num[i] < 0 || (unsigned)rec->num[i] % nchans != c)
                continue;
            while (j < pub->acked && (unsigned)pub->ack_num[j] % nchans != c)
                j++;
            ck_assert_msg(j < pub->acked, "%s: m%d was never accepted (or came twice)", who,
                          rec->num[i]);
            ck_assert_msg(rec->num[i] == pub->ack_num[j], "%s: m%d where m%d was due", who,
                          rec->num[i], pub->ack_num[j]);
            ck_assert_msg(rec->id[i].time_ms == pub->ack_id[j].time_ms &&
                              rec->id[i].tag == pub->ack_id[j].tag,
                          "%s: m%d has id %llu-%u, Redis gave %llu-%u", who, rec->num[i],
                          (unsigned long long)rec->id[i].time_ms, rec->id[i].tag,
                          (unsigned long long)pub->ack_id[j].time_ms, pub->ack_id[j].tag);
            j++;
        }
    }
}

/* ---- options, ids, slots ----------------------------------------------------------------- */

START_TEST(options_ids_and_slots)
{
    redis_conf_t c;
    shk_redis_opts_t o = {.url = "redis://:sec%20@example.org:7000/3"};
    shk_chan_msgid_t id;
    ck_assert_int_eq(shk_redis_conf(&o, &c), SHK_OK);
    ck_assert_str_eq(c.host, "example.org");
    ck_assert_int_eq(c.port, 7000);
    ck_assert_uint_eq(c.db, 3);
    ck_assert_str_eq(c.password, "sec%20");
    ck_assert_str_eq(c.ns, "shmkit");
    ck_assert_uint_eq(c.max_stored, SHK_CHAN_DEFAULT_MAX_STORED);
    o = (shk_redis_opts_t){.url = "redis://[::1]", .password = "pw", .ns = "ns-1"};
    ck_assert_int_eq(shk_redis_conf(&o, &c), SHK_OK);
    ck_assert_str_eq(c.host, "::1");
    ck_assert_int_eq(c.port, 6379);
    ck_assert_str_eq(c.password, "pw");
    ck_assert_str_eq(c.ns, "ns-1");
    o = (shk_redis_opts_t){.url = "unix:/run/redis.sock?db=2"};
    ck_assert_int_eq(shk_redis_conf(&o, &c), SHK_OK);
    ck_assert_str_eq(c.path, "/run/redis.sock");
    ck_assert_uint_eq(c.db, 2);
    const char *bad[] = {"", "http://x", "redis://", "redis://h:0", "redis://h:65536",
                         "redis://h:12x", "redis://h/x", "redis://user@h", "unix:rel",
                         "unix:/p?x=1", "redis://[::1", "redis://h o"};
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        o = (shk_redis_opts_t){.url = bad[i]};
        ck_assert_msg(shk_redis_check_opts(&o) != SHK_OK, "%s accepted", bad[i]);
    }
    o = (shk_redis_opts_t){.url = "redis://h", .ns = "a{b}"};
    ck_assert_int_eq(shk_redis_check_opts(&o), SHK_EINVAL);
    o = (shk_redis_opts_t){.url = "redis://h", .password = "a\nb"};
    ck_assert_int_eq(shk_redis_check_opts(&o), SHK_EINVAL);
    ck_assert_int_eq(shk_redis_check_opts(NULL), SHK_EINVAL);

    ck_assert_int_eq(shk_redis_parse_id("1700000000000-3", 15, &id), SHK_OK);
    ck_assert_uint_eq(id.time_ms, 1700000000000ULL);
    ck_assert_uint_eq(id.tag, 3);
    ck_assert_int_eq(shk_redis_parse_id("1-4294967295", 12, &id), SHK_OK);
    ck_assert_int_eq(shk_redis_parse_id("1-4294967296", 12, &id), SHK_EINVAL);
    ck_assert_int_eq(shk_redis_parse_id("1-", 2, &id), SHK_EINVAL);
    ck_assert_int_eq(shk_redis_parse_id("-1", 2, &id), SHK_EINVAL);
    ck_assert_int_eq(shk_redis_parse_id("12", 2, &id), SHK_EINVAL);
    ck_assert_int_eq(shk_redis_parse_id("1-2x", 4, &id), SHK_EINVAL);
    ck_assert_int_eq(shk_redis_parse_id("99999999999999999999-1", 22, &id), SHK_EINVAL);
    /* Redis Cluster's own examples */
    ck_assert_uint_eq(shk_redis_slot("123456789", 9), 0x31c3 & 16383);
    ck_assert_uint_eq(shk_redis_slot("foo", 3), 12182);
    ck_assert_str_eq(shk_redis_state_name(SHK_REDIS_UP), "up");
}
END_TEST


/* The directive: what it accepts, and each refusal naming its reason. */
START_TEST(directive_checked)
{
    char path[128];
    static const struct {
        const char *conf, *msg;
    } bad[] = {
        {"channels_redis redis://127.0.0.1:1;", "needs a \"channels\" directive"},
        {"channels 1m;\nchannels_redis http://x;", "must start with redis:// or unix:"},
        {"channels 1m;\nchannels_redis redis://h:99999;", "the port must be 1 to 65535"},
        {"channels 1m;\nchannels_redis redis://h color=red;", "invalid parameter \"color=red\""},
        {"channels 1m;\nchannels_redis redis://h timeout=5x;", "invalid value in \"timeout=5x\""},
        {"channels 1m;\nchannels_redis redis://h namespace=a/b;", "namespace"},
        {"channels 1m;\nchannels_redis redis://h;\nchannels_redis redis://h;", "duplicate"},
        {"worker_processes 64;\nchannels 1m;\nchannels_redis redis://h;", "at most 63 workers"},
    };
    snprintf(path, sizeof path, "/tmp/shk_test_redis_conf_%ld.conf", (long)getpid());
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fprintf(f, "channels 1m max_stored=5 ttl=1m;\n"
               "channels_redis redis://:pw@127.0.0.1:6390/2 namespace=x.y timeout=2s "
               "connect_timeout=1s backoff=50ms backoff_max=2s;\n");
    fclose(f);
    ck_assert_msg(shk_master_check(path, NULL) == SHK_OK, "%s", shk_last_errmsg());
    for (unsigned i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fprintf(f, "%s\n", bad[i].conf);
        fclose(f);
        ck_assert_int_eq(shk_master_check(path, NULL), SHK_ECONF);
        ck_assert_msg(strstr(shk_last_errmsg(), bad[i].msg), "%s: %s", bad[i].conf,
                      shk_last_errmsg());
    }
    unlink(path);
}
END_TEST

/* ---- three instances ----------------------------------------------------------------------- */

static tr_srv_t srv;

/* A publish on A reaches A, B and C once, in order, with Redis's ids. */
static void fan_out(int port, int cluster)
{
    inst_t in[3];
    const char *names[] = {"ia", "ib", "ic"};
    const char *chans[] = {"news", "sport", "a:b", "w.x"};
    int n = (int)tu_scale(400, 10);
    pid_t subs[3], pub;
    for (int i = 0; i < 3; i++) {
        inst_make(&in[i], names[i], port, 1000);
        relay_start(&in[i]);
    }
    for (int i = 0; i < 3; i++)
        wait_up(&in[i]);
    for (int i = 0; i < 3; i++) {
        subargs_t a = {.in = &in[i], .slot = 1, .idx = 0, .want = n, .nchans = 4};
        memcpy(a.chans, chans, sizeof chans);
        subs[i] = sub_start(&a);
    }
    pubargs_t pa = {.in = &in[0], .first = 0, .count = n, .chans = chans, .nchans = 4};
    pub = tu_fork(pub_main, &pa);
    tu_wait_ok(pub);
    for (int i = 0; i < 3; i++)
        tu_wait_ok(subs[i]);
    ck_assert_int_eq(in[0].sh->acked, n);
    for (int i = 0; i < 3; i++) {
        shk_redis_stats_t st;
        ck_assert_int_eq(shk_redis_stats(in[i].zone, &st), SHK_OK);
        ck_assert_uint_eq(st.nodes, cluster ? 3u : 1u);
        ck_assert_uint_eq(st.state, SHK_REDIS_UP);
    }
    for (int i = 0; i < 3; i++) {
        shk_redis_stats_t st;
        check_rec(names[i], &in[i].sh->rec[0], in[0].sh, 0, 4);
        /* the counters once the relay stopped (a subscriber may get a
         * message before its relay counted it) */
        relay_stop_wait(&in[i]);
        ck_assert_int_eq(shk_redis_stats(in[i].zone, &st), SHK_OK);
        ck_assert_uint_ge(st.relayed, (uint64_t)n);
        ck_assert_uint_eq(st.cluster, (unsigned)cluster);
        if (i == 0) {
            ck_assert_uint_eq(st.published, (uint64_t)n);
            printf("fan_out%s: %d messages, %llu commands on A (%.2f per publish)\n",
                   cluster ? " (cluster)" : "", n, (unsigned long long)st.commands,
                   (double)st.commands / n);
        }
        ck_assert_msg(shk_chan_check(in[i].ch) == SHK_OK, "%s", shk_last_errmsg());
    }
    for (int i = 0; i < 3; i++)
        inst_free(&in[i]);
}

START_TEST(three_instances_fan_out)
{
    memset(&srv, 0, sizeof srv);
    tr_srv_start(&srv);
    fan_out(srv.port, 0);
    /* the streams keep max_stored entries each (1000 > what went in) */
    ck_assert_int_eq(tr_srv_int(&srv, "XLEN t:{news}"), tu_scale(400, 10) / 4);
    tr_srv_stop(&srv);
}
END_TEST


/* The channel's last id on an instance is at least *id (polling the zone). */
static void wait_last(inst_t *in, const char *chan, const shk_chan_msgid_t *id)
{
    uint64_t end = now_ms() + STALL_MS;
    shk_chan_info_t info;
    for (;;) {
        if (shk_chan_info(in->ch, chan, &info) == SHK_OK && info.last_seq &&
            (info.last_id.time_ms > id->time_ms ||
             (info.last_id.time_ms == id->time_ms && info.last_id.tag >= id->tag)))
            return;
        ck_assert_msg(now_ms() < end, "instance %s never reached %llu-%u on %s", in->name,
                      (unsigned long long)id->time_ms, id->tag, chan);
        pause_ms(2);
    }
}

/* A subscriber that leaves A after half the messages and resumes on B
 * after the last id it got loses nothing and gets nothing twice. */
static void resume_elsewhere(int port)
{
    inst_t a, b;
    const char *chans[] = {"room"};
    int n = (int)tu_scale(200, 10) & ~1;
    tu_pipe_t half, go_on;
    inst_make(&a, "ra", port, 1000);
    inst_make(&b, "rb", port, 1000);
    relay_start(&a);
    relay_start(&b);
    wait_up(&a);
    wait_up(&b);
    subargs_t s1 = {.in = &a, .slot = 1, .idx = 0, .want = n / 2, .nchans = 1, .chans = {"room"}};
    pid_t p1 = sub_start(&s1);
    tu_pipe(&half);
    tu_pipe(&go_on);
    pubargs_t pa = {.in = &a, .count = n, .chans = chans, .nchans = 1, .half = &half,
                    .go_on = &go_on};
    pid_t pub = tu_fork(pub_main, &pa);
    ck_assert_int_eq(tu_await(&half), 0);
    tu_wait_ok(p1); /* it has the first half and left */
    rec_t *r1 = &a.sh->rec[0];
    ck_assert_int_eq(r1->n, n / 2);
    /* the client reconnects to B with its last id; B has relayed that far */
    wait_last(&b, "room", &r1->id[n / 2 - 1]);
    subargs_t s2 = {.in = &b, .slot = 1, .idx = 0, .want = n / 2, .nchans = 1, .chans = {"room"},
                    .from = {.mode = SHK_CHAN_FROM_AFTER, .after = r1->id[n / 2 - 1]}};
    pid_t p2 = sub_start(&s2);
    tu_signal(&go_on);
    tu_wait_ok(pub);
    tu_wait_ok(p2);
    tu_pipe_close(&half);
    tu_pipe_close(&go_on);
    /* both halves together are every accepted message, once, in order */
    rec_t *all = calloc(1, sizeof *all);
    rec_t *r2 = &b.sh->rec[0];
    for (int i = 0; i < r1->n; i++, all->n++) {
        all->id[all->n] = r1->id[i];
        all->num[all->n] = r1->num[i];
    }
    for (int i = 0; i < r2->n; i++, all->n++) {
        all->id[all->n] = r2->id[i];
        all->num[all->n] = r2->num[i];
    }
    check_rec("A then B", all, a.sh, 0, 1);
    free(all);
    relay_stop_wait(&a);
    relay_stop_wait(&b);
    inst_free(&a);
    inst_free(&b);
}

typedef void (*victim_fn)(void *ctx, int restart);

/* Load through A, subscribers on A and B; Redis (or one cluster master)
 * killed with SIGKILL after half, publishes refused while it is down, then
 * restarted: every accepted message reaches both once, in order; the
 * links came back. */
static void redis_outage(int port, victim_fn victim, void *vctx)
{
    inst_t a, b;
    const char *chans[] = {"x1", "x2", "x3"};
    int n = (int)tu_scale(300, 10) & ~1;
    tu_pipe_t half, go_on;
    shk_redis_stats_t st;
    inst_make(&a, "oa", port, 1000);
    inst_make(&b, "ob", port, 1000);
    relay_start(&a);
    relay_start(&b);
    wait_up(&a);
    wait_up(&b);
    subargs_t sa = {.in = &a, .slot = 1, .idx = 0, .want = n, .nchans = 3,
                    .chans = {"x1", "x2", "x3"}};
    subargs_t sb = sa;
    sb.in = &b;
    pid_t pa_ = sub_start(&sa), pb_ = sub_start(&sb);
    tu_pipe(&half);
    tu_pipe(&go_on);
    pubargs_t pa = {.in = &a, .count = n, .chans = chans, .nchans = 3, .retry = 1, .half = &half,
                    .go_on = &go_on};
    pid_t pub = tu_fork(pub_main, &pa);
    ck_assert_int_eq(tu_await(&half), 0);
    victim(vctx, 0); /* SIGKILL */
    tu_signal(&go_on);
    {
        /* the publisher is refused while it is down (polling it) */
        uint64_t end = now_ms() + STALL_MS;
        while (a.sh->refused + a.sh->failed == 0) {
            ck_assert_msg(now_ms() < end, "no publish was refused while Redis was down");
            pause_ms(2);
        }
    }
    victim(vctx, 1); /* restart, same data */
    tu_wait_ok(pub);
    tu_wait_ok(pa_);
    tu_wait_ok(pb_);
    tu_pipe_close(&half);
    tu_pipe_close(&go_on);
    ck_assert_int_eq(a.sh->acked, n);
    check_rec("A", &a.sh->rec[0], a.sh, 0, 3);
    check_rec("B", &b.sh->rec[0], a.sh, 0, 3);
    ck_assert_int_eq(shk_redis_stats(a.zone, &st), SHK_OK);
    ck_assert_uint_ge(st.reconnects, 1);
    ck_assert_uint_ge(st.publish_errors + st.refused, 1);
    printf("redis_outage: %d accepted, %d refused, %d timed out; A reconnected %llu times\n", n,
           a.sh->refused, a.sh->failed, (unsigned long long)st.reconnects);
    ck_assert_int_eq(shk_redis_stats(b.zone, &st), SHK_OK);
    ck_assert_uint_ge(st.reconnects, 1);
    relay_stop_wait(&a);
    relay_stop_wait(&b);
    inst_free(&a);
    inst_free(&b);
}

/* B's relay killed after half the messages; the second half is published
 * while B has none; a new relay resumes from B's store: B's subscriber gets
 * every message once, in order. */
static void relay_killed(int port)
{
    inst_t a, b;
    const char *chans[] = {"k1", "k2"};
    int n = (int)tu_scale(300, 10) & ~1;
    tu_pipe_t half, go_on;
    shk_redis_stats_t st;
    inst_make(&a, "ka", port, 1000);
    inst_make(&b, "kb", port, 1000);
    relay_start(&a);
    relay_start(&b);
    wait_up(&a);
    wait_up(&b);
    subargs_t sb = {.in = &b, .slot = 1, .idx = 0, .want = n, .nchans = 2, .chans = {"k1", "k2"}};
    pid_t ps = sub_start(&sb);
    tu_pipe(&half);
    tu_pipe(&go_on);
    pubargs_t pa = {.in = &a, .count = n, .chans = chans, .nchans = 2, .half = &half,
                    .go_on = &go_on};
    pid_t pub = tu_fork(pub_main, &pa);
    ck_assert_int_eq(tu_await(&half), 0);
    kill(b.relay, SIGKILL);
    tu_wait(b.relay);
    shk_bus_reap(b.bus, b.relay);
    tu_signal(&go_on);
    tu_wait_ok(pub); /* all published while B has no relay */
    relay_start(&b);
    tu_wait_ok(ps);
    tu_pipe_close(&half);
    tu_pipe_close(&go_on);
    check_rec("B", &b.sh->rec[0], a.sh, 0, 2);
    ck_assert_int_eq(shk_redis_stats(b.zone, &st), SHK_OK);
    ck_assert_uint_ge(st.caught_up, 1);
    relay_stop_wait(&a);
    relay_stop_wait(&b);
    inst_free(&a);
    inst_free(&b);
}

static void kill_srv(void *ctx, int restart)
{
    tr_srv_t *s = ctx;
    if (restart)
        tr_srv_start(s);
    else
        tr_srv_kill(s, SIGKILL);
}

START_TEST(resume_on_another_instance)
{
    memset(&srv, 0, sizeof srv);
    tr_srv_start(&srv);
    resume_elsewhere(srv.port);
    tr_srv_stop(&srv);
}
END_TEST

START_TEST(redis_killed_and_restarted)
{
    memset(&srv, 0, sizeof srv);
    tr_srv_start(&srv);
    redis_outage(srv.port, kill_srv, &srv);
    tr_srv_stop(&srv);
}
END_TEST

START_TEST(relay_killed_resumes)
{
    memset(&srv, 0, sizeof srv);
    tr_srv_start(&srv);
    relay_killed(srv.port);
    tr_srv_stop(&srv);
}
END_TEST


/* ---- real masters ------------------------------------------------------------------------- */

typedef struct {
    _Atomic int ready, go, resume;
    _Atomic int relay_pid[2], up[2];
    int n;
    rec_t rec[2][2];
    shared_t pub;
} mshared_t;

typedef struct {
    mshared_t *m;
    int inst;
} mctx_t;

typedef struct {
    mshared_t *m;
    int num, busy;
} mreq_t;

static void on_mdone(int status, const shk_chan_msgid_t *id, const char *msg, void *ctx)
{
    mreq_t *q = ctx;
    (void)msg;
    q->busy = 0;
    if (status == SHK_OK && q->m->pub.acked < MAXMSG) {
        q->m->pub.ack_id[q->m->pub.acked] = *id;
        q->m->pub.ack_num[q->m->pub.acked] = q->num;
        q->m->pub.acked++;
        q->num++;
    } else if (status != SHK_OK) {
        q->m->pub.refused++;
    }
}

/* A worker: subscribes to "live", records what it gets; worker 0 of
 * instance 0 publishes m0 .. m<n-1> through the relay, one at a time,
 * pausing after half until the parent says resume. Worker 0 of each
 * instance reports its relay's pid and state. */
static int mworker(shk_worker_t *w, void *ctx)
{
    mctx_t *c = ctx;
    mshared_t *m = c->m;
    unsigned slot = shk_worker_slot(w);
    shk_chan_t *ch = shk_worker_chan(w);
    shk_bus_t *bus = shk_worker_bus(w);
    shk_zone_t *z = shk_worker_zone(w, "shmkit_chan");
    shk_redis_t *r = shk_worker_redis(w);
    mreq_t q = {m, 0, 0};
    int publisher = c->inst == 0 && slot == 0;
    if (!ch || !z || !r || slot > 1)
        return 3;
    shk_chan_sub_t *sub = shk_chan_sub_new(ch, on_msg, &m->rec[c->inst][slot]);
    if (!sub || shk_chan_sub_add(sub, "live", NULL) != SHK_OK)
        return 4;
    atomic_fetch_add(&m->ready, 1);
    while (!shk_worker_quitting()) {
        shk_bus_wait(bus, 10);
        shk_bus_dispatch(bus, SHK_BUS_BUDGET);
        shk_chan_tick(ch);
        shk_redis_tick(r);
        if (slot == 0) {
            shk_redis_stats_t st;
            if (shk_redis_stats(z, &st) == SHK_OK) {
                atomic_store(&m->relay_pid[c->inst], (int)st.pid);
                atomic_store(&m->up[c->inst], st.state == SHK_REDIS_UP);
            }
        }
        if (!publisher || !atomic_load(&m->go) || q.busy || q.num >= m->n)
            continue;
        if (q.num == m->n / 2 && !atomic_load(&m->resume))
            continue;
        char data[32];
        snprintf(data, sizeof data, "m%d", q.num);
        if (shk_redis_publish(r, "live", data, strlen(data), NULL, NULL, on_mdone, &q) == SHK_OK)
            q.busy = 1;
        else
            m->pub.refused++;
    }
    shk_chan_sub_free(sub);
    return 0;
}

static void wait_flag(_Atomic int *f, int want, const char *what)
{
    uint64_t end = now_ms() + STALL_MS;
    while (atomic_load(f) < want) {
        ck_assert_msg(now_ms() < end, "waited too long for %s", what);
        pause_ms(5);
    }
}

/* Two real masters (two workers each, a relay each), a publishing worker
 * on A: every worker of both gets every message once, in order, with the
 * ids Redis gave; B's relay is SIGKILLed after half, the master respawns
 * it and it resumes from B's store while the rest is published. */
START_TEST(real_masters_relay_respawned)
{
    mshared_t *m = tu_shared(sizeof *m);
    char conf[2][128];
    pid_t master[2];
    memset(&srv, 0, sizeof srv);
    tr_srv_start(&srv);
    m->n = (int)tu_scale(200, 10) & ~1;
    for (int i = 0; i < 2; i++) {
        FILE *f;
        snprintf(conf[i], sizeof conf[i], "/tmp/shk_test_redis_%ld_%d.conf", (long)getpid(), i);
        f = fopen(conf[i], "w");
        ck_assert_ptr_nonnull(f);
        fprintf(f,
                "worker_processes 2;\n"
                "shm_instance rm%d;\n"
                "channels 8m store_messages=on max_stored=1000;\n"
                "channels_redis redis://127.0.0.1:%d namespace=rm backoff=20ms "
                "backoff_max=200ms timeout=3s;\n",
                i, srv.port);
        fclose(f);
    }
    for (int i = 0; i < 2; i++) {
        master[i] = tu_fork_raw();
        if (master[i] == 0) {
            mctx_t c = {m, i};
            shk_app_t app = {.name = "trm", .worker = mworker, .ctx = &c};
            int rc = shk_master_run(conf[i], &app, NULL);
            TU_CHECK(rc == SHK_OK, "master %d: %s", i, shk_last_errmsg());
            tu_exit(0);
        }
    }
    wait_flag(&m->ready, 4, "the four workers to subscribe");
    wait_flag(&m->up[0], 1, "A's link");
    wait_flag(&m->up[1], 1, "B's link");
    atomic_store(&m->go, 1);
    {
        uint64_t end = now_ms() + STALL_MS;
        while (m->pub.acked < m->n / 2) {
            ck_assert_msg(now_ms() < end, "the first half was not accepted");
            pause_ms(5);
        }
    }
    int old = atomic_load(&m->relay_pid[1]);
    ck_assert_int_gt(old, 0);
    ck_assert_int_eq(kill(old, SIGKILL), 0);
    atomic_store(&m->resume, 1);
    {
        uint64_t end = now_ms() + 2 * STALL_MS;
        for (;;) {
            int done = 1;
            for (int i = 0; i < 2; i++)
                for (int k = 0; k < 2; k++)
                    done &= m->rec[i][k].n >= m->n;
            if (done)
                break;
            ck_assert_msg(now_ms() < end, "not every worker got every message");
            pause_ms(5);
        }
    }
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++)
            check_rec(i ? "B" : "A", &m->rec[i][k], &m->pub, 0, 1);
    ck_assert_int_ne(atomic_load(&m->relay_pid[1]), old); /* respawned */
    for (int i = 0; i < 2; i++) {
        kill(master[i], SIGTERM);
        tu_wait_ok(master[i]);
        unlink(conf[i]);
    }
    tr_srv_stop(&srv);
    tu_unshare(m, sizeof *m);
}
END_TEST


/* An entry added to a stream behind the relays' backs (no announcement) is
 * a gap the next announcement reveals: B catches the channel up and its
 * subscriber gets all three, in order. Malformed announcements on the
 * pub/sub channel (untrusted bytes) are ignored. */
static void gap_caught_up(int port, tr_srv_t *node, int nnodes)
{
    inst_t a, b;
    const char *chans[] = {"g"};
    shk_redis_stats_t st;
    redisContext *c;
    redisReply *rep;
    shk_chan_msgid_t hidden;
    static const char *const junk[] = {
        "", "x", "1-1", "1-1\n0-0\n", "1-1\n0-0\n300\n0\n0\nabc", "1-1\n0-0\n3\n0\n0\nab",
        "1-1\n0-0\n3\n9\n0\nabc", "1-x\n0-0\n1\n0\n0\ng", "1-1\n0-0\n3\n0\n0\na b",
        "1-1\n2-2-2\n1\n0\n0\ng", "99999999999999999999-1\n0-0\n1\n0\n0\ng",
        "1-1\n0-0\n00001\n0\n0\ng\n", "1-1\n0-0\n1\n0\n-1\ng"};
    inst_make(&a, "ga", port, 1000);
    inst_make(&b, "gb", port, 1000);
    relay_start(&a);
    relay_start(&b);
    wait_up(&a);
    wait_up(&b);
    subargs_t sb = {.in = &b, .slot = 1, .idx = 0, .want = 3, .nchans = 1, .chans = {"g"}};
    pid_t ps = sub_start(&sb);
    pubargs_t p0 = {.in = &a, .first = 0, .count = 1, .chans = chans, .nchans = 1};
    tu_wait_ok(tu_fork(pub_main, &p0));
    wait_last(&b, "g", &a.sh->ack_id[0]);
    /* on a cluster: the node that owns the slot (the others answer MOVED) */
    for (int k = 0;; k++) {
        c = tr_srv_conn(&node[k]);
        rep = redisCommand(c, "XADD t:{g} MAXLEN 1000 * d m1 e %s t %s", "", "");
        ck_assert_ptr_nonnull(rep);
        if (rep->type != REDIS_REPLY_ERROR || k == nnodes - 1)
            break;
        freeReplyObject(rep);
        redisFree(c);
    }
    ck_assert_msg(rep->type == REDIS_REPLY_STRING, "XADD: %s", rep->str);
    ck_assert_int_eq(shk_redis_parse_id(rep->str, rep->len, &hidden), SHK_OK);
    freeReplyObject(rep);
    for (unsigned i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        rep = redisCommand(c, "PUBLISH t:pub %b", junk[i], strlen(junk[i]));
        freeReplyObject(rep);
    }
    redisFree(c);
    pubargs_t p2 = {.in = &a, .first = 2, .count = 1, .chans = chans, .nchans = 1};
    tu_wait_ok(tu_fork(pub_main, &p2));
    tu_wait_ok(ps);
    rec_t *r = &b.sh->rec[0];
    ck_assert_int_eq(r->n, 3);
    ck_assert_int_eq(r->num[0], 0);
    ck_assert_int_eq(r->num[1], 1);
    ck_assert_int_eq(r->num[2], 2);
    ck_assert(r->id[1].time_ms == hidden.time_ms && r->id[1].tag == hidden.tag);
    ck_assert(r->id[2].time_ms == a.sh->ack_id[1].time_ms && r->id[2].tag == a.sh->ack_id[1].tag);
    relay_stop_wait(&a);
    relay_stop_wait(&b);
    ck_assert_int_eq(shk_redis_stats(b.zone, &st), SHK_OK);
    ck_assert_uint_ge(st.caught_up, 1);
    ck_assert_uint_ge(st.catchups, 1);
    inst_free(&a);
    inst_free(&b);
}

START_TEST(gap_caught_up_and_junk_ignored)
{
    memset(&srv, 0, sizeof srv);
    tr_srv_start(&srv);
    gap_caught_up(srv.port, &srv, 1);
    tr_srv_stop(&srv);
}
END_TEST

/* ---- the cluster's topology changing ---------------------------------------------------------- */

static redisReply *node_cmd(const tr_srv_t *s, const char *fmt, ...)
{
    va_list ap;
    redisContext *c = tr_srv_conn(s);
    redisReply *r;
    va_start(ap, fmt);
    r = redisvCommand(c, fmt, ap);
    va_end(ap);
    redisFree(c);
    ck_assert_ptr_nonnull(r);
    return r;
}

static void node_id(const tr_srv_t *s, char *out, size_t n)
{
    redisReply *r = node_cmd(s, "CLUSTER MYID");
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    snprintf(out, n, "%s", r->str);
    freeReplyObject(r);
}

/* Move `slot` (and its keys) from node src to node dst, as resharding
 * does. */
static void move_slot(unsigned slot, int src, int dst)
{
    char sid[64], did[64];
    redisReply *r;
    node_id(&cl[src], sid, sizeof sid);
    node_id(&cl[dst], did, sizeof did);
    freeReplyObject(node_cmd(&cl[dst], "CLUSTER SETSLOT %u IMPORTING %s", slot, sid));
    freeReplyObject(node_cmd(&cl[src], "CLUSTER SETSLOT %u MIGRATING %s", slot, did));
    r = node_cmd(&cl[src], "CLUSTER GETKEYSINSLOT %u 1000", slot);
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *m = node_cmd(&cl[src], "MIGRATE 127.0.0.1 %d %b 0 5000", cl[dst].port,
                                 r->element[i]->str, r->element[i]->len);
        ck_assert_msg(m->type != REDIS_REPLY_ERROR, "MIGRATE: %s", m->str);
        freeReplyObject(m);
    }
    freeReplyObject(r);
    for (int k = 0; k < 3; k++)
        freeReplyObject(node_cmd(&cl[k], "CLUSTER SETSLOT %u NODE %s", slot, did));
}

/* A channel's slot moves to another master between two halves of a
 * stream of publishes: the relays follow MOVED, nothing is lost. */
static void slot_moved(int port)
{
    inst_t a, b;
    const char *chans[] = {"mv"};
    unsigned slot = shk_redis_slot("mv", 2);
    int n = (int)tu_scale(200, 10) & ~1, src = -1;
    tu_pipe_t half, go_on;
    for (int k = 0; k < 3 && src < 0; k++) {
        redisReply *r = node_cmd(&cl[k], "CLUSTER COUNTKEYSINSLOT %u", slot);
        redisReply *o = node_cmd(&cl[k], "CLUSTER NODES");
        /* the node whose own line (myself) lists the slot's range */
        char *me = strstr(o->str, "myself");
        char *eol = me ? strchr(me, '\n') : NULL;
        if (me) {
            for (char *p = me; eol && p < eol; p++)
                if (*p == ' ' || *p == '\n') {
                    unsigned lo, hi;
                    if (sscanf(p + 1, "%u-%u", &lo, &hi) == 2 && lo <= slot && slot <= hi)
                        src = k;
                }
        }
        freeReplyObject(r);
        freeReplyObject(o);
    }
    ck_assert_int_ge(src, 0);
    inst_make(&a, "ma", port, 1000);
    inst_make(&b, "mb", port, 1000);
    relay_start(&a);
    relay_start(&b);
    wait_up(&a);
    wait_up(&b);
    subargs_t sb = {.in = &b, .slot = 1, .idx = 0, .want = n, .nchans = 1, .chans = {"mv"}};
    pid_t ps = sub_start(&sb);
    tu_pipe(&half);
    tu_pipe(&go_on);
    pubargs_t pa = {.in = &a, .count = n, .chans = chans, .nchans = 1, .retry = 1, .half = &half,
                    .go_on = &go_on};
    pid_t pub = tu_fork(pub_main, &pa);
    ck_assert_int_eq(tu_await(&half), 0);
    move_slot(slot, src, (src + 1) % 3);
    tu_signal(&go_on);
    tu_wait_ok(pub);
    tu_wait_ok(ps);
    tu_pipe_close(&half);
    tu_pipe_close(&go_on);
    check_rec("B", &b.sh->rec[0], a.sh, 0, 1);
    ck_assert_int_eq(a.sh->refused + a.sh->failed, 0); /* followed, not refused */
    relay_stop_wait(&a);
    relay_stop_wait(&b);
    inst_free(&a);
    inst_free(&b);
}

/* The same on a 3-master cluster: the four channels hash to slots of
 * different masters (checked), publishes go to each channel's master, the
 * announcements reach the relays through any node. */
START_TEST(cluster_same_checks)
{
    const char *chans[] = {"news", "sport", "a:b", "w.x"};
    unsigned owners = 0;
    tr_cluster_start(cl);
    for (unsigned i = 0; i < 4; i++) {
        redisContext *c = tr_srv_conn(&cl[0]);
        redisReply *r = redisCommand(c, "CLUSTER KEYSLOT t:{%s}", chans[i]);
        ck_assert_int_eq(r->integer, shk_redis_slot(chans[i], strlen(chans[i])));
        freeReplyObject(r);
        redisFree(c);
        for (int k = 0; k < 3; k++) {
            c = tr_srv_conn(&cl[k]);
            r = redisCommand(c, "CLUSTER COUNTKEYSINSLOT %u", shk_redis_slot(chans[i], strlen(chans[i])));
            freeReplyObject(r);
            redisFree(c);
        }
        owners |= 1u << (shk_redis_slot(chans[i], strlen(chans[i])) * 3 / 16384);
    }
    ck_assert_msg(owners != 1 && owners != 2 && owners != 4, "every channel on one master");
    fan_out(cl[1].port, 1);
    resume_elsewhere(cl[2].port);
    relay_killed(cl[0].port);
    gap_caught_up(cl[0].port, cl, 3);
    slot_moved(cl[2].port);
    /* the master of "x1" killed and restarted */
    redis_outage(cl[1].port, kill_srv, &cl[shk_redis_slot("x1", 2) * 3 / 16384]);
    tr_cluster_stop(cl);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("redis");
    TCase *tc = tcase_create("redis");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, options_ids_and_slots);
    tcase_add_test(tc, directive_checked);
    tcase_add_test(tc, three_instances_fan_out);
    tcase_add_test(tc, resume_on_another_instance);
    tcase_add_test(tc, redis_killed_and_restarted);
    tcase_add_test(tc, relay_killed_resumes);
    tcase_add_test(tc, gap_caught_up_and_junk_ignored);
    tcase_add_test(tc, real_masters_relay_respawned);
    tcase_add_test(tc, cluster_same_checks);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
