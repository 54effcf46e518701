/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * test_chan.c: the channel store. Publish and subscribe in one process and
 * across 4 forked workers (every message to every subscriber once, in
 * order; a publisher that is a worker, one that is not, one with no bus at
 * all); catch-up by id and by count, atomically with the subscription;
 * trimming to max_stored (the oldest stored messages dropped, never one in
 * flight); every limit and error; the zone full (old stored messages reclaimed,
 * ENOMEM with nothing damaged, DELETE giving the memory back); a worker
 * whose queue is full (missed alerts caught up by its tick); a worker
 * killed with subscribers and messages in flight (no reference left, every
 * block accounted for), and its successor discarding the alerts queued for
 * it; a worker killed holding the store's lock; ttl and inactivity with a
 * test clock; the events channel; a read-only attached store; a damaged
 * header; zone bytes per stored message; and random steps against a shadow
 * model (seed printed).
 */
#include "shmkit.h"
#include "shk_chan_internal.h"
#include "util_test.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#define MB (1024u * 1024u)
/* A liveness bound: a worker that receives nothing for this long fails. */
#define STALL_MS 20000

static shk_zones_t *reg;
static shk_zone_t *zone, *bzone;
static shk_bus_t *bus;
static shk_chan_t *ch;

/* A zone of `size` for the store and a bus of `slots` queues of `queue`
 * bytes in a zone of its own. */
static void make_store(size_t size, unsigned slots, size_t queue, const shk_chan_opts_t *o)
{
    reg = shk_zones_new(NULL);
    zone = shk_zone_add(reg, "chan", size, "test");
    bzone = shk_zone_add(reg, "bus", 4 * MB + slots * (queue + 4096), "test");
    ck_assert_ptr_nonnull(zone);
    ck_assert_ptr_nonnull(bzone);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    bus = shk_bus_create(bzone, slots, queue);
    ck_assert_msg(bus != NULL, "%s", shk_last_errmsg());
    ch = shk_chan_create(zone, o);
    ck_assert_msg(ch != NULL, "%s", shk_last_errmsg());
    shk_chan_set_bus(ch, bus);
}

static void drop_store(void)
{
    shk_chan_close(ch);
    shk_bus_close(bus);
    shk_zones_free(reg);
    ch = NULL;
    bus = NULL;
    reg = NULL;
}

/* Join bus slot `slot` and a store slot in this process. */
static void join_here(unsigned slot)
{
    ck_assert_int_eq(shk_bus_join(bus, slot), SHK_OK);
    ck_assert_int_ge(shk_chan_join(ch, bus), 0);
}

static void drain(void)
{
    while (shk_bus_dispatch(bus, 64) > 0)
        ;
}

/* ---- a recording subscriber ----------------------------------------------------- */

#define REC_MAX 4096

typedef struct {
    int n;
    int deleted;
    int bad;
    uint64_t seq[REC_MAX];
    unsigned flags[REC_MAX];
    char chan[REC_MAX][16];
    char data[REC_MAX][32];
    char eid[REC_MAX][16];
    shk_chan_msgid_t id[REC_MAX];
} rec_t;

static void on_rec(shk_chan_sub_t *sub, const shk_chan_msg_t *m, void *ctx)
{
    rec_t *r = ctx;
    (void)sub;
    if (m->flags & SHK_CHAN_MSG_DELETED)
        r->deleted++;
    if (r->n >= REC_MAX) {
        r->bad = 1;
        return;
    }
    r->seq[r->n] = m->seq;
    r->flags[r->n] = m->flags;
    r->id[r->n] = m->id;
    snprintf(r->chan[r->n], sizeof r->chan[0], "%s", m->channel);
    snprintf(r->data[r->n], sizeof r->data[0], "%.*s", (int)(m->len < 31 ? m->len : 31),
             m->data ? (const char *)m->data : "");
    snprintf(r->eid[r->n], sizeof r->eid[0], "%s", m->event_id);
    if (strlen(m->channel) != m->channel_len)
        r->bad = 2;
    r->n++;
}

static void pub(const char *c, const char *data)
{
    int rc = shk_chan_publish(ch, c, data, strlen(data), NULL, NULL, NULL);
    ck_assert_msg(rc == SHK_OK, "publish %s: %s", c, shk_last_errmsg());
}

static void check_all(void)
{
    ck_assert_msg(shk_chan_check(ch) == SHK_OK, "%s", shk_last_errmsg());
    ck_assert_msg(shk_slab_check(shk_zone_slab(zone)) == SHK_OK, "%s", shk_last_errmsg());
}


/* ---- children and their handshakes -------------------------------------------------- */

/* Child i signals rdy[i] when it is ready and waits for go[i]. Each side
 * closes the ends it does not use, so a child that fails before it is ready
 * gives its parent an end of file rather than a hang (natively; under
 * valgrind a failed child waits to be killed), and a parent that fails
 * gives its children one. */
#define NKIDS 8
static tu_pipe_t rdy[NKIDS], go[NKIDS];

static void close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void kids_reset(void)
{
    for (int i = 0; i < NKIDS; i++) {
        tu_pipe_close(&rdy[i]);
        tu_pipe_close(&go[i]);
    }
}

static pid_t spawn(int (*fn)(void *), int i)
{
    pid_t pid;
    tu_pipe(&rdy[i]);
    tu_pipe(&go[i]);
    pid = tu_fork_raw();
    if (pid == 0) {
        for (int j = 0; j <= i; j++) {
            close_fd(&rdy[j].rd);
            close_fd(&go[j].wr);
            if (j != i) {
                close_fd(&rdy[j].wr);
                close_fd(&go[j].rd);
            }
        }
        tu_exit(fn((void *)(intptr_t)i));
    }
    close_fd(&rdy[i].wr);
    close_fd(&go[i].rd);
    return pid;
}

/* Slot i's counters (shk_chan_slot_stats), for the assertions. */
static shk_chan_slot_stats_t slot_of(shk_chan_t *c, unsigned i)
{
    shk_chan_slot_stats_t s;
    memset(&s, 0, sizeof s);
    if (shk_chan_slot_stats(c, i, &s) != SHK_OK) {
        fprintf(stderr, "shk_chan_slot_stats(%u): %s\n", i, shk_last_errmsg());
        abort();
    }
    return s;
}

/* ---- one process ------------------------------------------------------------------ */

START_TEST(publish_subscribe_one_process)
{
    rec_t *r = calloc(1, sizeof *r);
    shk_chan_info_t info;
    shk_chan_stats_t st;
    make_store(4 * MB, 2, 64 * 1024, NULL);
    join_here(0);
    shk_chan_sub_t *s = shk_chan_sub_new(ch, on_rec, r);
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(shk_chan_sub_add(s, "news", NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_sub_count(s), 1);
    pub("news", "one");
    ck_assert_int_eq(shk_chan_publish(ch, "news", "two", 3, "e2", "kind", &info), SHK_OK);
    ck_assert_uint_eq(info.published, 2);
    ck_assert_uint_eq(info.subscribers, 1);
    ck_assert_uint_eq(info.stored, 0);
    ck_assert_uint_eq(info.last_seq, 2);
    pub("other", "nobody");
    ck_assert_int_eq(r->n, 0); /* nothing before the dispatch */
    drain();
    ck_assert_int_eq(r->n, 2);
    ck_assert_str_eq(r->data[0], "one");
    ck_assert_str_eq(r->data[1], "two");
    ck_assert_str_eq(r->eid[1], "e2");
    ck_assert_str_eq(r->chan[1], "news");
    ck_assert_uint_eq(r->seq[0], 1);
    ck_assert_uint_eq(r->seq[1], 2);
    ck_assert(r->id[1].time_ms > r->id[0].time_ms ||
              (r->id[1].time_ms == r->id[0].time_ms && r->id[1].tag == r->id[0].tag + 1));
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.channels, 2);
    ck_assert_uint_eq(st.published, 3);
    ck_assert_uint_eq(st.delivered, 2);
    ck_assert_uint_eq(st.messages, 0); /* delivered and freed; "other" never stored one */
    ck_assert_uint_eq(st.subscribers, 1);
    ck_assert_uint_eq(slot_of(ch, (unsigned)(0)).alerts, 2);
    ck_assert_int_eq(shk_chan_info(ch, "other", &info), SHK_OK);
    ck_assert_uint_eq(info.published, 1);
    ck_assert_int_eq(shk_chan_info(ch, "nope", &info), SHK_ENOENT);
    check_all();
    ck_assert_int_eq(shk_chan_sub_del(s, "news"), SHK_OK);
    ck_assert_int_eq(shk_chan_sub_del(s, "news"), SHK_ENOENT);
    pub("news", "three");
    drain();
    ck_assert_int_eq(r->n, 2);
    shk_chan_sub_free(s);
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.subscribers, 0);
    check_all();
    drop_store();
    free(r);
}
END_TEST

/* ---- ids given by a relay ------------------------------------------------------ */

/* shk_chan_publish_id: the given id is the message's; an id not above the
 * channel's last is refused (a duplicate applied once), a new channel takes
 * any id, the store's own ids continue above a given one, and the backlog
 * after a given id works as with the store's ids. */
START_TEST(publish_with_given_ids)
{
    rec_t *r = calloc(1, sizeof *r);
    shk_chan_info_t info;
    shk_chan_opts_t o = {.store_messages = 1, .max_stored = 10};
    shk_chan_msgid_t a = {1000, 0}, b = {1000, 1}, c = {2000, 5}, old = {999, 7};
    make_store(4 * MB, 2, 64 * 1024, &o);
    join_here(0);
    shk_chan_sub_t *s = shk_chan_sub_new(ch, on_rec, r);
    ck_assert_int_eq(shk_chan_sub_add(s, "relay", NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_publish_id(ch, "relay", &a, "a", 1, "ea", NULL, &info), SHK_OK);
    ck_assert_uint_eq(info.last_id.time_ms, 1000);
    ck_assert_uint_eq(info.last_id.tag, 0);
    /* the same id again, and an older one: refused, nothing changed */
    ck_assert_int_eq(shk_chan_publish_id(ch, "relay", &a, "a", 1, NULL, NULL, &info), SHK_EEXIST);
    ck_assert_uint_eq(info.published, 1);
    ck_assert_int_eq(shk_chan_publish_id(ch, "relay", &old, "o", 1, NULL, NULL, NULL), SHK_EEXIST);
    ck_assert_int_eq(shk_chan_publish_id(ch, "relay", &b, "b", 1, NULL, NULL, NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_publish_id(ch, "relay", &c, "c", 1, NULL, NULL, &info), SHK_OK);
    ck_assert_int_eq(shk_chan_publish_id(ch, "relay", &b, "b", 1, NULL, NULL, NULL), SHK_EEXIST);
    ck_assert_uint_eq(info.published, 3);
    ck_assert_uint_eq(info.stored, 3);
    ck_assert_uint_eq(info.last_seq, 3);
    /* errors */
    ck_assert_int_eq(shk_chan_publish_id(ch, "relay", NULL, "x", 1, NULL, NULL, NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_chan_publish_id(ch, "relay", &(shk_chan_msgid_t){0, 0}, "x", 1, NULL,
                                         NULL, NULL),
                     SHK_EINVAL);
    ck_assert_int_eq(shk_chan_publish_id(ch, "bad id", &c, "x", 1, NULL, NULL, NULL), SHK_EINVAL);
    /* a new channel takes an id below another channel's */
    ck_assert_int_eq(shk_chan_publish_id(ch, "fresh", &old, "f", 1, NULL, NULL, &info), SHK_OK);
    ck_assert_uint_eq(info.last_id.time_ms, 999);
    /* the store's own next id stays above the given one (the clock is far
     * below 2000 ms since the epoch here) */
    ck_assert_int_eq(shk_chan_publish(ch, "relay", "d", 1, NULL, NULL, &info), SHK_OK);
    ck_assert(info.last_id.time_ms > 2000 || (info.last_id.time_ms == 2000 && info.last_id.tag == 6));
    drain();
    ck_assert_int_eq(r->n, 4);
    ck_assert_str_eq(r->data[0], "a");
    ck_assert_str_eq(r->eid[0], "ea");
    ck_assert_str_eq(r->data[1], "b");
    ck_assert_str_eq(r->data[2], "c");
    ck_assert_str_eq(r->data[3], "d");
    ck_assert_uint_eq(r->id[1].time_ms, 1000);
    ck_assert_uint_eq(r->id[1].tag, 1);
    ck_assert_uint_eq(r->id[2].time_ms, 2000);
    ck_assert_uint_eq(r->id[2].tag, 5);
    /* a subscriber resuming after a given id gets what followed it */
    {
        rec_t *r2 = calloc(1, sizeof *r2);
        shk_chan_sub_t *s2 = shk_chan_sub_new(ch, on_rec, r2);
        shk_chan_from_t from = {.mode = SHK_CHAN_FROM_AFTER, .after = b};
        ck_assert_int_eq(shk_chan_sub_add(s2, "relay", &from), SHK_OK);
        ck_assert_int_eq(r2->n, 2);
        ck_assert_str_eq(r2->data[0], "c");
        ck_assert_str_eq(r2->data[1], "d");
        shk_chan_sub_free(s2);
        free(r2);
    }
    check_all();
    shk_chan_sub_free(s);
    drop_store();
    free(r);
}
END_TEST

/* ---- errors and limits ----------------------------------------------------------- */

START_TEST(errors_and_limits)
{
    shk_chan_opts_t o = {0};
    char longid[300];
    rec_t *r = calloc(1, sizeof *r);
    static char big[2048];
    shk_chan_info_t info;

    o.max_channels = 3;
    o.max_wildcard_channels = 2;
    o.max_subscribers = 2;
    o.max_id_len = 16;
    o.max_message = 1000;
    o.wildcard_prefix = "b_";
    o.max_wildcard = 1;
    make_store(4 * MB, 2, 64 * 1024, &o);

    /* the options */
    shk_chan_opts_t bad = {0};
    bad.slots = 64;
    ck_assert_ptr_null(shk_chan_create(bzone, &bad));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
    bad.slots = 0;
    bad.max_id_len = 256;
    ck_assert_ptr_null(shk_chan_create(bzone, &bad));
    bad.max_id_len = 0;
    bad.wildcard_prefix = "b/";
    ck_assert_ptr_null(shk_chan_create(bzone, &bad));
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
    bad.wildcard_prefix = NULL;
    bad.events_channel = "a b";
    ck_assert_ptr_null(shk_chan_create(bzone, &bad));
    ck_assert_ptr_null(shk_chan_create(zone, NULL)); /* one store per zone */
    ck_assert_int_eq(shk_last_error(), SHK_EEXIST);
    ck_assert_ptr_null(shk_chan_create(NULL, NULL));
    ck_assert_int_eq(shk_chan_reconfigure(ch, &(shk_chan_opts_t){.slots = 3}), SHK_EINVAL);

    /* ids */
    ck_assert_int_eq(shk_chan_publish(ch, "", "x", 1, NULL, NULL, NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_chan_publish(ch, NULL, "x", 1, NULL, NULL, NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_chan_publish(ch, "a/b", "x", 1, NULL, NULL, NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_chan_publish(ch, "a b", "x", 1, NULL, NULL, NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_chan_publish(ch, "a%20", "x", 1, NULL, NULL, NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_chan_publish(ch, "\xc3\xa9", "x", 1, NULL, NULL, NULL), SHK_EINVAL);
    memset(longid, 'a', sizeof longid - 1);
    longid[sizeof longid - 1] = '\0';
    longid[17] = '\0';
    ck_assert_int_eq(shk_chan_publish(ch, longid, "x", 1, NULL, NULL, NULL), SHK_ERANGE);
    longid[17] = 'a';
    ck_assert_int_eq(shk_chan_publish(ch, longid, "x", 1, NULL, NULL, NULL), SHK_ERANGE);
    longid[16] = '\0';
    ck_assert_int_eq(shk_chan_publish(ch, longid, "x", 1, NULL, NULL, NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_publish(ch, "Az09-._~:@!$&'()*+,;=", "x", 1, NULL, NULL, NULL),
                     SHK_ERANGE); /* every character is allowed, but 21 > 16 */
    ck_assert_int_eq(shk_chan_publish(ch, "Az09-._~:@!$&'(", "x", 1, NULL, NULL, NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_info(ch, "a/b", &info), SHK_EINVAL);
    ck_assert_int_eq(shk_chan_delete(ch, "a b"), SHK_EINVAL);

    /* messages */
    ck_assert_int_eq(shk_chan_publish(ch, "m", big, 1001, NULL, NULL, NULL), SHK_ERANGE);
    ck_assert_int_eq(shk_chan_publish(ch, "m", NULL, 1, NULL, NULL, NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_chan_publish(ch, "m", "x", 1, "a\nb", NULL, NULL), SHK_EINVAL);
    memset(big, 'e', 300);
    big[300] = '\0';
    ck_assert_int_eq(shk_chan_publish(ch, "m", "x", 1, big, NULL, NULL), SHK_ERANGE);
    ck_assert_int_eq(shk_chan_publish(ch, "m", "x", 1, NULL, big, NULL), SHK_ERANGE);
    big[255] = '\0';
    ck_assert_int_eq(shk_chan_publish(ch, "m", "x", 1, big, big, NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_publish(ch, "m", NULL, 0, NULL, NULL, NULL), SHK_OK);

    /* channels: 3 normal ones exist now (a..., Az09..., m) */
    ck_assert_int_eq(shk_chan_publish(ch, "n", "x", 1, NULL, NULL, NULL), SHK_EAGAIN);
    ck_assert_int_eq(shk_chan_publish(ch, "b_1", "x", 1, NULL, NULL, NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_publish(ch, "b_2", "x", 1, NULL, NULL, NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_publish(ch, "b_3", "x", 1, NULL, NULL, NULL), SHK_EAGAIN);
    ck_assert_int_eq(shk_chan_delete(ch, "m"), SHK_OK);
    ck_assert_int_eq(shk_chan_delete(ch, "m"), SHK_ENOENT);
    ck_assert_int_eq(shk_chan_publish(ch, "n", "x", 1, NULL, NULL, NULL), SHK_OK);

    /* subscribers */
    ck_assert_ptr_null(shk_chan_sub_new(ch, on_rec, r)); /* not joined */
    ck_assert_int_eq(shk_last_error(), SHK_EPERM);
    join_here(0);
    ck_assert_int_eq(shk_chan_join(ch, bus), SHK_EEXIST);
    ck_assert_int_eq(shk_chan_slot(ch), 0);
    ck_assert_ptr_null(shk_chan_sub_new(ch, NULL, r));
    shk_chan_sub_t *s1 = shk_chan_sub_new(ch, on_rec, r), *s2 = shk_chan_sub_new(ch, on_rec, r),
                   *s3 = shk_chan_sub_new(ch, on_rec, r);
    ck_assert_int_eq(shk_chan_sub_add(s1, "n", NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_sub_add(s1, "n", NULL), SHK_EEXIST);
    ck_assert_int_eq(shk_chan_sub_add(s2, "n", NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_sub_add(s3, "n", NULL), SHK_EAGAIN); /* max_subscribers */
    ck_assert_int_eq(shk_chan_sub_add(s3, "o", NULL), SHK_EAGAIN); /* max_channels */
    ck_assert_int_eq(shk_chan_sub_add(s1, "b_1", NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_sub_add(s1, "b_2", NULL), SHK_ERANGE); /* max_wildcard */
    ck_assert_int_eq(shk_chan_sub_add(s2, "b_2", NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_sub_add(s3, "b_1", &(shk_chan_from_t){SHK_CHAN_FROM_LAST, {0, 0}, 0}),
                     SHK_EINVAL);
    ck_assert_int_eq(shk_chan_sub_add(s3, "b_1", &(shk_chan_from_t){7, {0, 0}, 0}), SHK_EINVAL);
    ck_assert_int_eq(shk_chan_sub_add(s3, "x/y", NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_chan_sub_add(NULL, "n", NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_chan_sub_del(s3, "n"), SHK_ENOENT);
    shk_chan_sub_free(s1);
    ck_assert_int_eq(shk_chan_sub_add(s3, "n", NULL), SHK_OK); /* s1's place */
    shk_chan_sub_free(s2);
    shk_chan_sub_free(s3);
    shk_chan_sub_free(NULL);

    /* a read-only handle */
    shk_chan_t *ro = shk_chan_open(zone, SHK_ZONE_RDONLY);
    ck_assert_ptr_nonnull(ro);
    ck_assert_int_eq(shk_chan_publish(ro, "n", "x", 1, NULL, NULL, NULL), SHK_EPERM);
    ck_assert_int_eq(shk_chan_delete(ro, "n"), SHK_EPERM);
    ck_assert_int_eq(shk_chan_join(ro, bus), SHK_EPERM);
    ck_assert_int_eq(shk_chan_tick(ro), SHK_EPERM);
    ck_assert_int_eq(shk_chan_reap(ro, 1), SHK_EPERM);
    ck_assert_int_eq(shk_chan_info(ro, "n", &info), SHK_OK);
    ck_assert_int_eq(shk_chan_check(ro), SHK_OK);
    shk_chan_close(ro);
    ck_assert_ptr_null(shk_chan_open(bzone, 0)); /* no store there */
    ck_assert_int_eq(shk_last_error(), SHK_ENOENT);
    ck_assert_int_eq(shk_chan_reap(ch, 999999), SHK_ESRCH);
    ck_assert_int_eq(shk_chan_reap(ch, 0), SHK_EINVAL);
    check_all();
    ck_assert_int_eq(shk_chan_leave(ch), SHK_OK);
    ck_assert_int_eq(shk_chan_leave(ch), SHK_EPERM);
    drop_store();
    free(r);
}
END_TEST

/* ---- catch-up ---------------------------------------------------------------------- */

START_TEST(catch_up_by_id_and_count)
{
    shk_chan_opts_t o = {.store_messages = 1, .max_stored = 5};
    rec_t *r1 = calloc(1, sizeof *r1), *r2 = calloc(1, sizeof *r2), *r3 = calloc(1, sizeof *r3),
          *r4 = calloc(1, sizeof *r4);
    shk_chan_info_t info;
    shk_chan_msgid_t ids[16];
    char buf[16];

    make_store(4 * MB, 2, 64 * 1024, &o);
    join_here(0);
    for (int i = 1; i <= 8; i++) {
        snprintf(buf, sizeof buf, "m%d", i);
        ck_assert_int_eq(shk_chan_publish(ch, "c", buf, strlen(buf), NULL, NULL, &info), SHK_OK);
        ids[i] = info.last_id;
    }
    ck_assert_uint_eq(info.stored, 5); /* m4..m8 */
    shk_chan_sub_t *s1 = shk_chan_sub_new(ch, on_rec, r1), *s2 = shk_chan_sub_new(ch, on_rec, r2),
                   *s3 = shk_chan_sub_new(ch, on_rec, r3), *s4 = shk_chan_sub_new(ch, on_rec, r4);
    ck_assert_int_eq(shk_chan_sub_add(s1, "c", &(shk_chan_from_t){SHK_CHAN_FROM_LAST, {0, 0}, 3}),
                     SHK_OK);
    ck_assert_int_eq(r1->n, 3); /* before the call returned */
    ck_assert_str_eq(r1->data[0], "m6");
    ck_assert_str_eq(r1->data[2], "m8");
    ck_assert_uint_eq(r1->flags[0], SHK_CHAN_MSG_BACKLOG);
    ck_assert_int_eq(shk_chan_sub_add(s2, "c", &(shk_chan_from_t){SHK_CHAN_FROM_AFTER, ids[5], 0}),
                     SHK_OK);
    ck_assert_int_eq(r2->n, 3);
    ck_assert_str_eq(r2->data[0], "m6");
    ck_assert_int_eq(shk_chan_sub_add(s3, "c", &(shk_chan_from_t){SHK_CHAN_FROM_AFTER, {0, 0}, 0}),
                     SHK_OK);
    ck_assert_int_eq(r3->n, 5); /* every stored one: m4..m8 */
    ck_assert_str_eq(r3->data[0], "m4");
    ck_assert_int_eq(shk_chan_sub_add(s4, "c", &(shk_chan_from_t){SHK_CHAN_FROM_LAST, {0, 0}, 99}),
                     SHK_OK);
    ck_assert_int_eq(r4->n, 5);
    /* live messages next, once each, after the backlog */
    pub("c", "m9");
    /* a subscription made while m9's alert is queued: m9 comes in its
     * backlog, not twice */
    shk_chan_sub_free(s4);
    r4->n = 0;
    s4 = shk_chan_sub_new(ch, on_rec, r4);
    ck_assert_int_eq(shk_chan_sub_add(s4, "c", &(shk_chan_from_t){SHK_CHAN_FROM_LAST, {0, 0}, 2}),
                     SHK_OK);
    ck_assert_int_eq(r4->n, 2);
    ck_assert_str_eq(r4->data[0], "m8");
    ck_assert_str_eq(r4->data[1], "m9");
    drain();
    pub("c", "m10");
    drain();
    ck_assert_int_eq(r1->n, 5);
    ck_assert_str_eq(r1->data[3], "m9");
    ck_assert_str_eq(r1->data[4], "m10");
    ck_assert_uint_eq(r1->flags[3], 0);
    ck_assert_int_eq(r2->n, 5);
    ck_assert_int_eq(r3->n, 7);
    ck_assert_int_eq(r4->n, 3);
    ck_assert_str_eq(r4->data[2], "m10");
    for (int i = 1; i < r3->n; i++)
        ck_assert_uint_eq(r3->seq[i], r3->seq[i - 1] + 1);
    /* after the newest id: nothing but new ones */
    rec_t *r5 = calloc(1, sizeof *r5);
    shk_chan_sub_t *s5 = shk_chan_sub_new(ch, on_rec, r5);
    ck_assert_int_eq(shk_chan_info(ch, "c", &info), SHK_OK);
    ck_assert_int_eq(
        shk_chan_sub_add(s5, "c", &(shk_chan_from_t){SHK_CHAN_FROM_AFTER, info.last_id, 0}),
                     SHK_OK);
    ck_assert_int_eq(r5->n, 0);
    check_all();
    drop_store();
    free(r1);
    free(r2);
    free(r3);
    free(r4);
    free(r5);
}
END_TEST

/* The seqs of channel `name`'s stored messages, oldest first, from its
 * list under the lock; *nmsgs its messages in all (stored or in flight). */
static int stored_seqs(const char *name, uint64_t *out, int max, uint32_t *nmsgs)
{
    int n = 0;
    ck_assert_int_eq(shk_chan_lock(ch), SHK_OK);
    chan_ch_t *c = shk_chan_find(ch, name, strlen(name));
    ck_assert_ptr_nonnull(c);
    *nmsgs = c->nmsgs;
    for (uint64_t o = c->head; o; o = ((chan_msg_t *)chan_ptr(ch, o))->next) {
        chan_msg_t *m = chan_ptr(ch, o);
        if ((SHK_READ_ONCE(m->refs) & CHAN_REF_STORE) && n < max)
            out[n++] = m->seq;
    }
    shk_chan_unlock(ch);
    return n;
}

/* Trimming to max_stored drops the oldest stored messages and nothing
 * else: a subscriber of this process that does not dispatch keeps every
 * message in flight, so the channel's list holds fewer, then more in-flight
 * messages before the stored ones than max_stored (both of trim's walks);
 * after each publish the stored ones are exactly the newest 5, and once
 * dispatched the subscriber has every message once, in order. */
START_TEST(trim_drops_the_oldest_stored)
{
    shk_chan_opts_t o = {.store_messages = 1, .max_stored = 5};
    rec_t *r = calloc(1, sizeof *r);
    shk_chan_info_t info;
    uint64_t seqs[16];
    uint32_t nmsgs, most_in_flight = 0;
    char buf[16];

    make_store(4 * MB, 2, 256 * 1024, &o);
    join_here(0);
    shk_chan_sub_t *s = shk_chan_sub_new(ch, on_rec, r);
    ck_assert_int_eq(shk_chan_sub_add(s, "c", NULL), SHK_OK);
    for (int i = 1; i <= 60; i++) {
        snprintf(buf, sizeof buf, "m%d", i);
        pub("c", buf);
        ck_assert_int_eq(shk_chan_info(ch, "c", &info), SHK_OK);
        ck_assert_uint_eq(info.stored, i < 5 ? i : 5);
        int n = stored_seqs("c", seqs, 16, &nmsgs);
        ck_assert_int_eq(n, i < 5 ? i : 5);
        for (int k = 0; k < n; k++)
            ck_assert_msg(seqs[k] == (uint64_t)(i - n + 1 + k),
                          "after m%d, stored #%d is m%llu, not m%d", i, k,
                          (unsigned long long)seqs[k], i - n + 1 + k);
        if (nmsgs - (uint32_t)n > most_in_flight)
            most_in_flight = nmsgs - (uint32_t)n;
        check_all();
        /* in flight before the stored ones: up to 25 (m1..m30 undispatched),
         * then none, then up to 10 */
        if (i == 30 || i == 45) {
            drain();
            ck_assert_int_eq(r->n, i);
        }
    }
    ck_assert_uint_eq(most_in_flight, 25); /* the walk from the tail was taken */
    drain();
    ck_assert_int_eq(r->n, 60);
    for (int k = 0; k < r->n; k++) {
        snprintf(buf, sizeof buf, "m%d", k + 1);
        ck_assert_str_eq(r->data[k], buf);
    }
    ck_assert_int_eq(r->bad, 0);
    shk_chan_sub_free(s);
    check_all();
    drop_store();
    free(r);
}
END_TEST

/* ---- delete --------------------------------------------------------------------------- */

/* Blocks move between processes: channels one process deleted (freed in
 * its memcheck view) are made again by another, with the same sizes, so
 * their records lie where the first process freed blocks; its next
 * channels then walk the tree through them. Under valgrind the child's
 * memcheck must not take those nodes for freed memory (a read of one is a
 * memory error, which turns the child's status into 1): the tree's
 * accessor and the store's comparator make what they view defined. */
static tu_pipe_t xp_freed, xp_remade;

static int xp_child(void *arg)
{
    char id[16]; /* room for any int: the sanitizer build checks */
    (void)arg;
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "x%02d", i);
        TU_CHECK(shk_chan_publish(ch, id, "m", 1, NULL, NULL, NULL) == SHK_OK, "%s",
                 shk_last_errmsg());
    }
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "x%02d", i);
        TU_CHECK(shk_chan_delete(ch, id) == SHK_OK, "%s", shk_last_errmsg());
    }
    tu_signal(&xp_freed);
    TU_CHECK(tu_await(&xp_remade) == 0, "remade");
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "z%02d", i);
        TU_CHECK(shk_chan_publish(ch, id, "m", 1, NULL, NULL, NULL) == SHK_OK, "%s",
                 shk_last_errmsg());
        shk_chan_info_t info;
        TU_CHECK(shk_chan_info(ch, id, &info) == SHK_OK, "%s: %s", id, shk_last_errmsg());
    }
    return 0;
}

START_TEST(records_reused_across_processes)
{
    shk_chan_opts_t o = {.store_messages = 1};
    char id[16]; /* room for any int: the sanitizer build checks */
    make_store(4 * MB, 2, 64 * 1024, &o);
    tu_pipe(&xp_freed);
    tu_pipe(&xp_remade);
    pid_t pid = tu_fork(xp_child, NULL);
    ck_assert_int_eq(tu_await(&xp_freed), 0);
    for (int i = 0; i < 40; i++) {
        snprintf(id, sizeof id, "y%02d", i);
        ck_assert_int_eq(shk_chan_publish(ch, id, "m", 1, NULL, NULL, NULL), SHK_OK);
    }
    tu_signal(&xp_remade);
    tu_wait_ok(pid);
    ck_assert_int_eq(shk_chan_check(ch), SHK_OK);
    shk_chan_stats_t st;
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.channels, 80);
    tu_pipe_close(&xp_freed);
    tu_pipe_close(&xp_remade);
    drop_store();
}
END_TEST

START_TEST(delete_with_subscribers)
{
    shk_chan_opts_t o = {.store_messages = 1};
    rec_t *r = calloc(1, sizeof *r), *r2 = calloc(1, sizeof *r2);
    shk_chan_stats_t st;
    make_store(4 * MB, 2, 64 * 1024, &o);
    join_here(0);
    shk_chan_sub_t *s = shk_chan_sub_new(ch, on_rec, r), *s2 = shk_chan_sub_new(ch, on_rec, r2);
    ck_assert_int_eq(shk_chan_sub_add(s, "d", NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_sub_add(s, "keep", NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_sub_add(s2, "d", NULL), SHK_OK);
    pub("d", "before1");
    pub("d", "before2");
    ck_assert_int_eq(shk_chan_delete(ch, "d"), SHK_OK);
    /* the id is free again at once; the old channel's alerts do not reach
     * subscribers of the new one */
    rec_t *r3 = calloc(1, sizeof *r3);
    shk_chan_sub_t *s3 = shk_chan_sub_new(ch, on_rec, r3);
    ck_assert_int_eq(shk_chan_sub_add(s3, "d", &(shk_chan_from_t){SHK_CHAN_FROM_LAST, {0, 0}, 9}),
                     SHK_OK);
    ck_assert_int_eq(r3->n, 0);
    pub("d", "new");
    drain();
    ck_assert_int_eq(r->n, 3);
    ck_assert_str_eq(r->data[0], "before1");
    ck_assert_str_eq(r->data[1], "before2");
    ck_assert_uint_eq(r->flags[2], SHK_CHAN_MSG_DELETED);
    ck_assert_int_eq(r->deleted, 1);
    ck_assert_int_eq(r2->deleted, 1);
    ck_assert_int_eq(shk_chan_sub_count(s), 1); /* "keep" stays */
    ck_assert_int_eq(shk_chan_sub_count(s2), 0);
    ck_assert_int_eq(r3->n, 1);
    ck_assert_str_eq(r3->data[0], "new");
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.deleted, 1);
    ck_assert_uint_eq(st.subscribers, 2);
    ck_assert_uint_eq(st.stored, 1);
    check_all();
    drop_store();
    free(r);
    free(r2);
    free(r3);
}
END_TEST


/* ---- 4 forked workers --------------------------------------------------------------- */

#define W 4
#define NCH 5 /* c0..c3, and "all" */
#define SUBS 250
#define NPUB 4 /* the parent, a forked process with the bus, one without, worker 0 */

static const char *chname[NCH] = {"c0", "c1", "c2", "c3", "all"};
static long per_pub[NPUB]; /* messages each publisher sends on each channel */

typedef struct {
    uint64_t next_seq[NCH];     /* expected channel seq */
    long next_k[NCH][NPUB];     /* expected count from each publisher */
    long got;
    int bad;
} wrx_t;

static int chan_index(const char *name)
{
    for (int i = 0; i < NCH; i++)
        if (strcmp(name, chname[i]) == 0)
            return i;
    return -1;
}

/* Subscriber j of any worker is on c[j % 4], c[(j + 1) % 4] and "all". */
static int subscribed(int j, int c)
{
    return c == 4 || c == j % 4 || c == (j + 1) % 4;
}

static void on_fan(shk_chan_sub_t *sub, const shk_chan_msg_t *m, void *ctx)
{
    wrx_t *rx = ctx;
    int c = chan_index(m->channel), p = -1;
    long k = -1;
    char text[32];
    (void)sub;
    snprintf(text, sizeof text, "%.*s", (int)(m->len < 31 ? m->len : 31), (const char *)m->data);
    if (c < 0 || sscanf(text, "P%d %ld", &p, &k) != 2 || p < 0 || p >= NPUB) {
        rx->bad = 1;
        return;
    }
    if (m->seq != rx->next_seq[c] || k != rx->next_k[c][p]) {
        fprintf(stderr, "channel %s: seq %llu (expected %llu), P%d %ld (expected %ld)\n",
                m->channel, (unsigned long long)m->seq, (unsigned long long)rx->next_seq[c], p, k,
                rx->next_k[c][p]);
        rx->bad = 2;
    }
    rx->next_seq[c] = m->seq + 1;
    rx->next_k[c][p] = k + 1;
    rx->got++;
}

static void publish_all(int p, int channels_from, int channels_to)
{
    char buf[64];
    for (long k = 0; k < per_pub[p]; k++)
        for (int c = channels_from; c <= channels_to; c++) {
            int n = snprintf(buf, sizeof buf, "P%d %ld", p, k);
            int rc = shk_chan_publish(ch, chname[c], buf, (size_t)n, NULL, NULL, NULL);
            TU_CHECK(rc == SHK_OK, "publish: %s", shk_last_errmsg());
        }
}

static int fan_worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    wrx_t *rx = calloc(SUBS, sizeof *rx);
    long expect = 0, got, last = 0;
    uint64_t since = shk_time_ms();
    TU_CHECK(shk_bus_join(bus, (unsigned)me) == SHK_OK, "%s", shk_last_errmsg());
    TU_CHECK(shk_chan_join(ch, bus) >= 0, "%s", shk_last_errmsg());
    for (int j = 0; j < SUBS; j++) {
        shk_chan_sub_t *s = shk_chan_sub_new(ch, on_fan, &rx[j]);
        TU_CHECK(s != NULL, "%s", shk_last_errmsg());
        for (int c = 0; c < NCH; c++) {
            rx[j].next_seq[c] = 1;
            if (subscribed(j, c)) {
                TU_CHECK(shk_chan_sub_add(s, chname[c], NULL) == SHK_OK, "%s", shk_last_errmsg());
                for (int p = 0; p < NPUB; p++)
                    expect += p == 3 && c != 4 ? 0 : per_pub[p];
            }
        }
    }
    tu_signal(&rdy[me]);
    TU_CHECK(tu_await(&go[me]) == 0, "go");
    if (me == 0)
        publish_all(3, 4, 4); /* a publisher that is a worker */
    do {
        shk_bus_wait(bus, SHK_CHAN_TICK_MS);
        shk_bus_dispatch(bus, 64);
        TU_CHECK(shk_chan_tick(ch) >= 0, "%s", shk_last_errmsg());
        got = 0;
        for (int j = 0; j < SUBS; j++) {
            TU_CHECK(!rx[j].bad, "subscriber %d: bad message (%d)", j, rx[j].bad);
            got += rx[j].got;
        }
        TU_CHECK(got <= expect, "got %ld, expected %ld", got, expect);
        if (got > last) {
            last = got;
            since = shk_time_ms();
        }
        TU_CHECK(shk_time_ms() - since < STALL_MS, "nothing delivered for %d ms: %ld of %ld",
                 STALL_MS, got, expect);
    } while (got < expect);
    free(rx);
    return 0;
}

static int fan_publisher(void *arg)
{
    int me = (int)(intptr_t)arg, p = me - W + 1;
    if (p == 2)
        shk_chan_set_bus(ch, NULL); /* no bus: every alert is missed */
    TU_CHECK(tu_await(&go[me]) == 0, "go");
    publish_all(p, 0, 4);
    return 0;
}

START_TEST(four_workers_fan_out)
{
    pid_t pids[W + 2];
    shk_chan_stats_t st;
    long total = 0;
    make_store(32 * MB, W, 64 * 1024, NULL);
    per_pub[0] = tu_scale(400, 20);
    per_pub[1] = tu_scale(200, 20);
    per_pub[2] = tu_scale(50, 10);
    per_pub[3] = tu_scale(100, 10);
    for (int p = 0; p < NPUB; p++)
        total += per_pub[p] * (p == 3 ? 1 : NCH);
    for (int i = 0; i < W; i++)
        pids[i] = spawn(fan_worker, i);
    for (int p = 1; p <= 2; p++)
        pids[W + p - 1] = spawn(fan_publisher, W + p - 1);
    for (int i = 0; i < W; i++)
        ck_assert_int_eq(tu_await(&rdy[i]), 0);
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.subscribers, W * SUBS * 3); /* each on 3 channels */
    for (int i = 0; i < W + 2; i++)
        tu_signal(&go[i]);
    publish_all(0, 0, 4); /* the parent: not a worker, with the bus */
    for (int i = 0; i < W + 2; i++)
        tu_wait_ok(pids[i]);
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.published, (uint64_t)total);
    for (int i = 0; i < W; i++) {
        /* one alert per message per worker, whatever its subscribers */
        ck_assert_uint_eq(slot_of(ch, (unsigned)(i)).alerts + slot_of(ch, (unsigned)(i)).alerts_missed, (uint64_t)total);
        ck_assert_uint_ge(slot_of(ch, (unsigned)(i)).alerts_missed, (uint64_t)per_pub[2] * NCH);
        ck_assert_int_eq(shk_chan_reap(ch, slot_of(ch, (unsigned)(i)).pid), SHK_OK);
    }
    ck_assert_uint_eq(st.delivered, (uint64_t)W * SUBS / 4 *
                                        (4 * (per_pub[0] + per_pub[1] + per_pub[2]) * 3 +
                                         4 * per_pub[3]));
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.subscribers, 0);
    ck_assert_uint_eq(st.messages, 0);
    check_all();
    kids_reset();
    drop_store();
}
END_TEST

/* ---- a full queue ------------------------------------------------------------------ */

static long nfull;

static int slow_worker(void *arg)
{
    wrx_t *rx = calloc(3, sizeof *rx);
    long got, last = 0;
    uint64_t since = shk_time_ms();
    (void)arg;
    TU_CHECK(shk_bus_join(bus, 0) == SHK_OK, "%s", shk_last_errmsg());
    TU_CHECK(shk_chan_join(ch, bus) >= 0, "%s", shk_last_errmsg());
    for (int j = 0; j < 3; j++) {
        shk_chan_sub_t *s = shk_chan_sub_new(ch, on_fan, &rx[j]);
        for (int c = 0; c < NCH; c++)
            rx[j].next_seq[c] = 1;
        TU_CHECK(shk_chan_sub_add(s, chname[j], NULL) == SHK_OK, "%s", shk_last_errmsg());
    }
    tu_signal(&rdy[0]);
    TU_CHECK(tu_await(&go[0]) == 0, "go"); /* the queue fills meanwhile */
    do {
        shk_bus_wait(bus, SHK_CHAN_TICK_MS);
        shk_bus_dispatch(bus, 64);
        TU_CHECK(shk_chan_tick(ch) >= 0, "%s", shk_last_errmsg());
        got = 0;
        for (int j = 0; j < 3; j++) {
            TU_CHECK(!rx[j].bad, "bad message");
            got += rx[j].got;
        }
        if (got > last) {
            last = got;
            since = shk_time_ms();
        }
        TU_CHECK(shk_time_ms() - since < STALL_MS, "nothing delivered for %d ms: %ld of %ld",
                 STALL_MS, got, 3 * nfull);
    } while (got < 3 * nfull);
    TU_CHECK(got == 3 * nfull, "got %ld", got);
    return 0;
}

START_TEST(full_queue_loses_nothing)
{
    shk_chan_stats_t st;
    char buf[32];
    make_store(16 * MB, 1, 4096, NULL);
    nfull = tu_scale(500, 5);
    pid_t pid = spawn(slow_worker, 0);
    ck_assert_int_eq(tu_await(&rdy[0]), 0);
    for (long k = 0; k < nfull; k++)
        for (int c = 0; c < 3; c++) {
            int n = snprintf(buf, sizeof buf, "P0 %ld", k);
            ck_assert_int_eq(shk_chan_publish(ch, chname[c], buf, (size_t)n, NULL, NULL, NULL),
                             SHK_OK);
        }
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_gt(slot_of(ch, (unsigned)(0)).alerts_missed, 0); /* the queue was full */
    ck_assert_uint_eq(st.messages, 3 * nfull);      /* every one still there */
    tu_signal(&go[0]);
    tu_wait_ok(pid);
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.messages, 0);
    ck_assert_uint_eq(st.delivered, 3 * nfull);
    ck_assert_int_eq(shk_chan_reap(ch, pid), SHK_OK);
    check_all();
    kids_reset();
    drop_store();
}
END_TEST

/* ---- a worker killed ----------------------------------------------------------------- */

/* Chunks and pages the zone's slab has handed out. */
static void slab_snapshot(uint64_t *chunks, uint64_t *pages)
{
    shk_slab_stats_t s;
    *chunks = 0;
    ck_assert_int_eq(shk_slab_stats(shk_zone_slab(zone), &s), SHK_OK);
    for (unsigned i = 0; i < s.nclasses; i++) {
        shk_slab_class_stat_t cs;
        ck_assert_int_eq(shk_slab_class_stats(shk_zone_slab(zone), i, &cs), SHK_OK);
        *chunks += cs.used;
    }
    *pages = s.pages_total - s.pages_free;
}

/* In a child: join bus slot 0 and the store, and subscribe 50 times to
 * channels k0..k4 (10 each), every message recorded in r. */
static void join_slot0_with_subscribers(rec_t *r)
{
    char name[16];
    TU_CHECK(shk_bus_join(bus, 0) == SHK_OK, "%s", shk_last_errmsg());
    TU_CHECK(shk_chan_join(ch, bus) >= 0, "%s", shk_last_errmsg());
    for (int j = 0; j < 50; j++) {
        shk_chan_sub_t *s = shk_chan_sub_new(ch, on_rec, r);
        snprintf(name, sizeof name, "k%d", j % 5);
        TU_CHECK(shk_chan_sub_add(s, name, NULL) == SHK_OK, "%s", shk_last_errmsg());
    }
}

static int doomed_worker(void *arg)
{
    rec_t *r = calloc(1, sizeof *r);
    (void)arg;
    join_slot0_with_subscribers(r);
    tu_signal(&rdy[0]);
    for (;;)
        pause(); /* never dispatches: everything stays in flight */
    return 0;    /* not reached: the test kills it (gcc wants a return here) */
}

static int successor(void *arg)
{
    rec_t *r = calloc(1, sizeof *r);
    shk_chan_stats_t st;
    (void)arg;
    join_slot0_with_subscribers(r);
    /* the predecessor's alerts are still queued in this bus slot */
    while (shk_bus_dispatch(bus, 64) > 0)
        ;
    TU_CHECK(r->n == 0, "%d deliveries of the predecessor's messages", r->n);
    TU_CHECK(shk_chan_stats(ch, &st) == SHK_OK, "stats");
    TU_CHECK(slot_of(ch, (unsigned)(shk_chan_slot(ch))).stale > 0, "no stale alert discarded");
    tu_signal(&rdy[1]);
    TU_CHECK(tu_await(&go[1]) == 0, "go");
    for (uint64_t t0 = shk_time_ms(); r->n < 50;) {
        if (shk_bus_wait(bus, SHK_CHAN_TICK_MS) >= 0)
            shk_bus_dispatch(bus, 64);
        TU_CHECK(shk_time_ms() - t0 < STALL_MS, "%d of 50 in %d ms", r->n, STALL_MS);
    }
    TU_CHECK(r->n == 50, "got %d", r->n);
    for (int i = 0; i < r->n; i++)
        TU_CHECK(strcmp(r->data[i], "after") == 0, "got %s", r->data[i]);
    return 0;
}

START_TEST(worker_killed_leaves_no_reference)
{
    shk_chan_stats_t st;
    uint64_t chunks0, pages0, chunks1, pages1;
    char name[16];
    make_store(16 * MB, 1, 256 * 1024, NULL);
    for (int c = 0; c < 5; c++) { /* the channels exist before: they cost nothing new later */
        snprintf(name, sizeof name, "k%d", c);
        pub(name, "nobody");
    }
    shk_chan_tick(ch);
    slab_snapshot(&chunks0, &pages0);
    pid_t pid = spawn(doomed_worker, 0);
    ck_assert_int_eq(tu_await(&rdy[0]), 0);
    for (int k = 0; k < 100; k++)
        for (int c = 0; c < 5; c++) {
            snprintf(name, sizeof name, "k%d", c);
            pub(name, "in flight");
        }
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.messages, 500);
    ck_assert_uint_eq(st.subscribers, 50);
    kill(pid, SIGKILL);
    /* as the master does: reap while it is a zombie */
    siginfo_t si;
    ck_assert_int_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
    ck_assert_int_eq(shk_bus_reap(bus, pid), SHK_OK);
    ck_assert_int_eq(shk_chan_reap(ch, pid), SHK_OK);
    ck_assert_int_eq(shk_chan_reap(ch, pid), SHK_ESRCH);
    ck_assert_int_eq(tu_wait(pid), 128 + SIGKILL);
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.messages, 0);
    ck_assert_uint_eq(st.subscribers, 0);
    ck_assert_int_eq(slot_of(ch, (unsigned)(0)).pid, 0);
    check_all();
    slab_snapshot(&chunks1, &pages1);
    ck_assert_uint_eq(chunks1, chunks0); /* every block back */
    ck_assert_uint_eq(pages1, pages0);

    /* its successor in the bus slot gets the queued alerts and drops them */
    pid = spawn(successor, 1);
    ck_assert_int_eq(tu_await(&rdy[1]), 0);
    for (int c = 0; c < 5; c++) {
        snprintf(name, sizeof name, "k%d", c);
        pub(name, "after");
    }
    tu_signal(&go[1]);
    tu_wait_ok(pid);
    ck_assert_int_eq(shk_chan_reap(ch, pid), SHK_OK);
    check_all();
    kids_reset();
    drop_store();
}
END_TEST


/* ---- a worker killed holding the store's lock ---------------------------------------- */

static int lock_holder(void *arg)
{
    int me = (int)(intptr_t)arg, damage = me == 1;
    shk_shmtx_t m;
    TU_CHECK(shk_bus_join(bus, 0) == SHK_OK, "%s", shk_last_errmsg());
    TU_CHECK(shk_chan_join(ch, bus) >= 0, "%s", shk_last_errmsg());
    TU_CHECK(shk_zone_shmtx_create(zone, &m, "chan") == SHK_OK, "%s", shk_last_errmsg());
    TU_CHECK(shk_shmtx_lock(&m) == SHK_OK, "lock");
    if (damage) {
        /* half an update: a channel's stored count that its list does not have */
        shk_chan_info_t info;
        TU_CHECK(shk_chan_next(shk_chan_open(zone, SHK_ZONE_RDONLY), NULL, NULL, &info) == SHK_OK,
                 "next");
        chan_ch_t *c = shk_chan_descend(ch, info.id, strlen(info.id), 0);
        TU_CHECK(c != NULL, "channel");
        SHK_WRITE_ONCE(c->stored, c->stored + 7);
    }
    tu_signal(&rdy[me]);
    for (;;)
        pause();
}

static void kill_and_reap(pid_t pid, int want)
{
    siginfo_t si;
    kill(pid, SIGKILL);
    ck_assert_int_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
    ck_assert_int_eq(shk_chan_reap(ch, pid), want);
    ck_assert_int_eq(tu_wait(pid), 128 + SIGKILL);
}

START_TEST(worker_killed_holding_the_lock)
{
    shk_chan_opts_t o = {.store_messages = 1};
    shk_chan_info_t info;
    make_store(4 * MB, 1, 64 * 1024, &o);
    pub("x", "kept");
    pid_t pid = spawn(lock_holder, 0);
    ck_assert_int_eq(tu_await(&rdy[0]), 0);
    kill_and_reap(pid, SHK_OK); /* taken back, checked, clean */
    pub("x", "after");
    ck_assert_int_eq(shk_chan_info(ch, "x", &info), SHK_OK);
    ck_assert_uint_eq(info.stored, 2);
    check_all();

    /* the same, but it died in the middle of a change: the store is refused */
    pid = spawn(lock_holder, 1);
    ck_assert_int_eq(tu_await(&rdy[1]), 0);
    kill_and_reap(pid, SHK_ECORRUPT);
    ck_assert_int_eq(shk_chan_publish(ch, "x", "no", 2, NULL, NULL, NULL), SHK_ECORRUPT);
    ck_assert_int_eq(shk_chan_tick(ch), SHK_ECORRUPT);
    ck_assert_int_eq(shk_chan_check(ch), SHK_ECORRUPT);
    kids_reset();
    drop_store();
}
END_TEST

/* ---- the zone full ------------------------------------------------------------------- */

START_TEST(zone_full_reclaims_then_refuses)
{
    shk_chan_opts_t o = {.store_messages = 1, .max_stored = 100000, .max_message = 64 * 1024};
    shk_chan_stats_t st;
    shk_slab_stats_t ss;
    char buf[1024], name[16];
    rec_t *r = calloc(1, sizeof *r);
    long n = 0;
    uint64_t free_before, free_after;

    make_store(512 * 1024, 1, 64 * 1024, &o);
    /* stored messages fill the zone; every publish is still accepted, the
     * oldest ones making room */
    for (n = 0; n < 2000; n++) {
        snprintf(name, sizeof name, "f%ld", n % 7);
        memset(buf, 'a' + (int)(n % 26), sizeof buf);
        snprintf(buf, 16, "%ld", n % 100000);
        ck_assert_msg(shk_chan_publish(ch, name, buf, sizeof buf, NULL, NULL, NULL) == SHK_OK,
                      "publish %ld: %s", n, shk_last_errmsg());
    }
    static char big[16384];
    ck_assert_int_eq(shk_chan_publish(ch, "f0", big, sizeof big, NULL, NULL, NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_gt(st.reclaimed, 0);
    ck_assert_uint_lt(st.stored, 2000);
    check_all();
    /* what is stored is intact: the newest messages, whole */
    join_here(0);
    shk_chan_sub_t *s = shk_chan_sub_new(ch, on_rec, r);
    ck_assert_int_eq(shk_chan_sub_add(s, "f6", &(shk_chan_from_t){SHK_CHAN_FROM_LAST, {0, 0}, 3}),
                     SHK_OK);
    ck_assert_int_eq(r->n, 3);
    ck_assert_str_eq(r->data[2], "1994"); /* the last n with n % 7 == 6 */
    shk_chan_sub_free(s);
    /* DELETE gives the memory back, without allocating */
    ck_assert_int_eq(shk_slab_stats(shk_zone_slab(zone), &ss), SHK_OK);
    free_before = ss.pages_free;
    for (int c = 0; c < 7; c++) {
        snprintf(name, sizeof name, "f%d", c);
        ck_assert_int_eq(shk_chan_delete(ch, name), SHK_OK);
    }
    ck_assert_int_eq(shk_slab_stats(shk_zone_slab(zone), &ss), SHK_OK);
    free_after = ss.pages_free;
    ck_assert_uint_gt(free_after, free_before + 32);
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.stored, 0);
    ck_assert_uint_eq(st.messages, 0);
    check_all();

    /* messages in flight to a worker that does not read cannot be dropped:
     * the zone fills, and then a publish fails with nothing damaged */
    ck_assert_int_eq(shk_chan_reconfigure(ch, &(shk_chan_opts_t){.store_messages = 0,
                                                                .max_message = 64 * 1024}),
                     SHK_OK);
    s = shk_chan_sub_new(ch, on_rec, r);
    ck_assert_int_eq(shk_chan_sub_add(s, "g", NULL), SHK_OK);
    r->n = 0;
    int rc = SHK_OK;
    for (n = 0; n < 100000 && rc == SHK_OK; n++)
        rc = shk_chan_publish(ch, "g", buf, sizeof buf, NULL, NULL, NULL);
    ck_assert_int_eq(rc, SHK_ENOMEM);
    ck_assert_str_eq(shk_err_name(shk_last_error()), "SHK_ENOMEM");
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.messages, (uint64_t)n - 1);
    check_all();
    ck_assert_int_eq(shk_chan_delete(ch, "g"), SHK_OK); /* works with the zone full */
    drain();
    ck_assert_int_eq(r->deleted, 1);
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.messages, 0);
    ck_assert_int_eq(shk_slab_stats(shk_zone_slab(zone), &ss), SHK_OK);
    ck_assert_uint_ge(ss.pages_free, free_after - 2);
    check_all();
    shk_chan_sub_free(s);
    drop_store();
    free(r);
}
END_TEST

/* ---- ttl and inactivity -------------------------------------------------------------- */

static uint64_t fake_ms;

static uint64_t fake_clock(void *ctx)
{
    (void)ctx;
    return fake_ms;
}

START_TEST(ttl_and_inactivity)
{
    shk_chan_opts_t o = {.store_messages = 1, .ttl_ms = 1000, .inactivity_ms = 5000};
    shk_chan_info_t info;
    shk_chan_stats_t st;
    rec_t *r = calloc(1, sizeof *r);
    make_store(4 * MB, 1, 64 * 1024, &o);
    fake_ms = 1000000;
    shk_chan_set_clock(ch, fake_clock, NULL);
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(shk_chan_publish(ch, "t", "x", 1, NULL, NULL, &info), SHK_OK);
        ck_assert_uint_eq(info.last_id.time_ms, 1000000);
        ck_assert_uint_eq(info.last_id.tag, (unsigned)i); /* same millisecond: the tag counts */
    }
    fake_ms += 500;
    pub("t", "y");
    ck_assert_int_eq(shk_chan_info(ch, "t", &info), SHK_OK);
    ck_assert_uint_eq(info.last_id.time_ms, 1000500);
    ck_assert_uint_eq(info.last_id.tag, 0);
    fake_ms -= 200; /* the clock went back: ids still grow */
    pub("t", "z");
    ck_assert_int_eq(shk_chan_info(ch, "t", &info), SHK_OK);
    ck_assert_uint_eq(info.last_id.time_ms, 1000500);
    ck_assert_uint_eq(info.last_id.tag, 1);
    fake_ms += 200;
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.oldest_age_ms, 500);
    fake_ms += 600; /* the first three are 1100 ms old */
    ck_assert_int_eq(shk_chan_tick(ch), 0);
    ck_assert_int_eq(shk_chan_info(ch, "t", &info), SHK_OK);
    ck_assert_uint_eq(info.stored, 2);
    /* a channel with a subscriber stays however long it waits */
    join_here(0);
    shk_chan_sub_t *s = shk_chan_sub_new(ch, on_rec, r);
    ck_assert_int_eq(shk_chan_sub_add(s, "kept", NULL), SHK_OK);
    fake_ms += 1000;
    shk_chan_tick(ch);
    ck_assert_int_eq(shk_chan_info(ch, "t", &info), SHK_OK);
    ck_assert_uint_eq(info.stored, 0);
    fake_ms += 4899;
    shk_chan_tick(ch);
    ck_assert_int_eq(shk_chan_info(ch, "t", &info), SHK_OK); /* idle 4899 ms */
    fake_ms += 101; /* a tick expires at most once per SHK_CHAN_TICK_MS */
    shk_chan_tick(ch);
    ck_assert_int_eq(shk_chan_info(ch, "t", &info), SHK_ENOENT);
    ck_assert_int_eq(shk_chan_info(ch, "kept", &info), SHK_OK);
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.expired, 5);
    ck_assert_uint_eq(st.deleted, 1);
    ck_assert_uint_eq(st.oldest_age_ms, 0);
    /* unsubscribed, it goes after the inactivity time too */
    shk_chan_sub_free(s);
    fake_ms += 5000;
    shk_chan_tick(ch);
    ck_assert_int_eq(shk_chan_info(ch, "kept", &info), SHK_ENOENT);
    check_all();
    drop_store();
    free(r);
}
END_TEST

/* ---- the events channel ------------------------------------------------------------- */

typedef struct {
    int n;
    char text[32][128];
} ev_t;

static void on_event(shk_chan_sub_t *sub, const shk_chan_msg_t *m, void *ctx)
{
    ev_t *e = ctx;
    (void)sub;
    if (e->n < 32)
        snprintf(e->text[e->n++], sizeof e->text[0], "%.*s", (int)m->len, (const char *)m->data);
}

START_TEST(events_channel)
{
    shk_chan_opts_t o = {.events_channel = "ev"};
    ev_t *e = calloc(1, sizeof *e);
    rec_t *r = calloc(1, sizeof *r);
    shk_chan_info_t info;
    make_store(4 * MB, 1, 64 * 1024, &o);
    join_here(0);
    shk_chan_sub_t *es = shk_chan_sub_new(ch, on_event, e), *s = shk_chan_sub_new(ch, on_rec, r);
    ck_assert_int_eq(shk_chan_sub_add(es, "ev", NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_info(ch, "ev", &info), SHK_OK);
    ck_assert_uint_eq(info.flags, SHK_CHAN_EVENTS);
    pub("x", "hello");
    ck_assert_int_eq(shk_chan_sub_add(s, "x", NULL), SHK_OK);
    ck_assert_int_eq(shk_chan_sub_del(s, "x"), SHK_OK);
    ck_assert_int_eq(shk_chan_delete(ch, "x"), SHK_OK);
    drain();
    ck_assert_int_eq(e->n, 4);
    ck_assert_str_eq(e->text[0], "{\"type\":\"channel_created\",\"channel\":\"x\"}");
    ck_assert_str_eq(e->text[1], "{\"type\":\"subscribed\",\"channel\":\"x\",\"subscribers\":1}");
    ck_assert_str_eq(e->text[2],
                     "{\"type\":\"unsubscribed\",\"channel\":\"x\",\"subscribers\":0}");
    ck_assert_str_eq(e->text[3], "{\"type\":\"channel_deleted\",\"channel\":\"x\"}");
    check_all();
    drop_store();
    free(e);
    free(r);
}
END_TEST

/* ---- read-only, attached; iteration ------------------------------------------------- */

START_TEST(read_only_attached_and_iteration)
{
    static const char *ids[] = {"pre_2", "a", "b", "pre_10", "abc", "ab", "pre_1"};
    static const char *sorted[] = {"a", "ab", "abc", "b", "pre_1", "pre_10", "pre_2"};
    char inst[32];
    shk_chan_info_t info;
    shk_chan_stats_t st;
    shk_chan_opts_t o = {.wildcard_prefix = "pre_", .store_messages = 1};
    int n;

    snprintf(inst, sizeof inst, "tchan%d", (int)getpid());
    reg = shk_zones_new(inst);
    zone = shk_zone_add(reg, "chan", 4 * MB, "test");
    ck_assert_int_eq(shk_zone_set_kind(zone, SHK_ZONE_NAMED, 0), SHK_OK);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    ch = shk_chan_create(zone, &o);
    ck_assert_ptr_nonnull(ch);
    for (unsigned i = 0; i < 7; i++)
        ck_assert_int_eq(shk_chan_publish(ch, ids[i], "m", 1, NULL, NULL, NULL), SHK_OK);

    shk_zone_t *az = shk_zone_attach(inst, "chan", SHK_ZONE_RDONLY);
    ck_assert_msg(az != NULL, "%s", shk_last_errmsg());
    shk_chan_t *ro = shk_chan_open(az, 0);
    ck_assert_msg(ro != NULL, "%s", shk_last_errmsg());
    for (int pass = 0; pass < 2; pass++) {
        shk_chan_t *h = pass ? ch : ro; /* lock-free and locked walks agree */
        char last[SHK_CHAN_ID_MAX + 1] = "";
        n = 0;
        while (shk_chan_next(h, NULL, n ? last : NULL, &info) == SHK_OK) {
            ck_assert_int_lt(n, 7);
            ck_assert_str_eq(info.id, sorted[n]);
            ck_assert_uint_eq(info.stored, 1);
            snprintf(last, sizeof last, "%s", info.id);
            n++;
        }
        ck_assert_int_eq(n, 7);
        n = 0;
        last[0] = '\0';
        while (shk_chan_next(h, "pre_", n ? last : NULL, &info) == SHK_OK) {
            ck_assert_str_eq(info.id, sorted[4 + n]);
            ck_assert_uint_eq(info.flags, SHK_CHAN_WILDCARD);
            snprintf(last, sizeof last, "%s", info.id);
            n++;
        }
        ck_assert_int_eq(n, 3);
        ck_assert_int_eq(shk_chan_next(h, "ab", NULL, &info), SHK_OK);
        ck_assert_str_eq(info.id, "ab");
        ck_assert_int_eq(shk_chan_next(h, "ab", "ab", &info), SHK_OK);
        ck_assert_str_eq(info.id, "abc");
        ck_assert_int_eq(shk_chan_next(h, "ab", "abc", &info), SHK_ENOENT);
        ck_assert_int_eq(shk_chan_next(h, "a", "0", &info), SHK_OK);
        ck_assert_str_eq(info.id, "a");
        ck_assert_int_eq(shk_chan_next(h, "pre_1", "b", &info), SHK_OK);
        ck_assert_str_eq(info.id, "pre_1");
        ck_assert_int_eq(shk_chan_next(h, "zzz", NULL, &info), SHK_ENOENT);
        ck_assert_int_eq(shk_chan_info(h, "abc", &info), SHK_OK);
        ck_assert_uint_eq(info.published, 1);
        ck_assert_int_eq(shk_chan_stats(h, &st), SHK_OK);
        ck_assert_uint_eq(st.channels, 7);
        ck_assert_uint_eq(st.wildcard_channels, 3);
        ck_assert_uint_eq(st.stored, 7);
        ck_assert_int_eq(shk_chan_check(h), SHK_OK);
    }
    ck_assert_int_eq(shk_chan_publish(ro, "a", "m", 1, NULL, NULL, NULL), SHK_EPERM);
    shk_chan_close(ro);
    shk_zone_detach(az);
    shk_chan_close(ch);
    shk_zones_free(reg);
    reg = NULL;
    ch = NULL;
}
END_TEST

/* ---- a damaged header ----------------------------------------------------------------- */

START_TEST(damaged_header_is_refused)
{
    make_store(4 * MB, 1, 64 * 1024, NULL);
    chan_store_t *st = shk_zone_root(zone, "chan");
    shk_chan_t *h;
    st->version = 99;
    ck_assert_ptr_null(shk_chan_open(zone, 0));
    ck_assert_int_eq(shk_last_error(), SHK_ECORRUPT);
    ck_assert_msg(strstr(shk_last_errmsg(), "version") != NULL, "%s", shk_last_errmsg());
    st->version = 1;
    st->size += 64;
    ck_assert_ptr_null(shk_chan_open(zone, 0));
    ck_assert_msg(strstr(shk_last_errmsg(), "size") != NULL, "%s", shk_last_errmsg());
    st->size -= 64;
    uint32_t nslots = st->nslots;
    st->nslots = 64;
    ck_assert_ptr_null(shk_chan_open(zone, 0));
    ck_assert_int_eq(shk_last_error(), SHK_ECORRUPT);
    st->nslots = nslots;
    st->max_id_len = 1000;
    ck_assert_ptr_null(shk_chan_open(zone, 0));
    st->max_id_len = SHK_CHAN_ID_MAX;
    SHK_WRITE_ONCE(st->magic, 0);
    ck_assert_ptr_null(shk_chan_open(zone, 0));
    ck_assert_msg(strstr(shk_last_errmsg(), "magic") != NULL, "%s", shk_last_errmsg());
    SHK_WRITE_ONCE(st->magic, CHAN_MAGIC);
    h = shk_chan_open(zone, 0);
    ck_assert_ptr_nonnull(h);
    /* a damaged tree root is reported, not followed */
    pub("a", "x");
    uint64_t root = st->tree.root;
    st->tree.root = shk_zone_size(zone) * 2;
    ck_assert_int_eq(shk_chan_check(h), SHK_ECORRUPT);
    shk_chan_info_t info;
    ck_assert_int_eq(shk_chan_info(h, "a", &info), SHK_ENOENT);
    st->tree.root = root;
    ck_assert_int_eq(shk_chan_check(h), SHK_OK);
    shk_chan_close(h);
    drop_store();
}
END_TEST

/* ---- zone bytes per stored message ---------------------------------------------------- */

static double bytes_per_message(size_t len, int n)
{
    shk_slab_stats_t a, b;
    static char data[16384];
    ck_assert_int_eq(shk_slab_stats(shk_zone_slab(zone), &a), SHK_OK);
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(shk_chan_publish(ch, len > 1000 ? "big" : "small", data, len, NULL,
                                          NULL, NULL),
                         SHK_OK);
    ck_assert_int_eq(shk_slab_stats(shk_zone_slab(zone), &b), SHK_OK);
    return (double)(a.pages_free - b.pages_free) * (double)a.page_size / n;
}

START_TEST(zone_bytes_per_stored_message)
{
    shk_chan_opts_t o = {.store_messages = 1, .max_stored = 100000, .max_message = 65536};
    make_store(64 * MB, 1, 64 * 1024, &o);
    pub("small", "first");
    pub("big", "first");
    double small = bytes_per_message(64, 4000), big = bytes_per_message(16384, 500);
    printf("zone bytes per stored message: 64 B -> %.1f, 16 KiB -> %.1f\n", small, big);
    ck_assert_msg(small < 192, "%.1f bytes per 64-byte message", small);
    ck_assert_msg(big < 16600, "%.1f bytes per 16 KiB message", big);
    check_all();
    drop_store();
}
END_TEST


/* ---- random steps against a shadow model -------------------------------------------- */

#define RNC 6
#define RNS 12
#define RSTORE 4
#define RLIST 3000

typedef struct {
    int state; /* 0 not subscribed, 1 subscribed, 2 the channel was deleted, notice due */
    int nexp, ngot;
    int exp[RLIST], got[RLIST]; /* message numbers; -1 the deletion notice */
} rlink_t;

static rlink_t (*model)[RNC];
static int rbad;

static void on_model(shk_chan_sub_t *sub, const shk_chan_msg_t *m, void *ctx)
{
    int i = (int)(intptr_t)ctx, c = -1, g = -1;
    char text[16];
    (void)sub;
    snprintf(text, sizeof text, "%.*s", (int)(m->len < 15 ? m->len : 15),
             m->data ? (const char *)m->data : "");
    if (sscanf(m->channel, "r%d", &c) != 1 || c < 0 || c >= RNC) {
        rbad = 1;
        return;
    }
    rlink_t *l = &model[i][c];
    if (m->flags & SHK_CHAN_MSG_DELETED) {
        if (l->state != 2)
            rbad = 2;
        l->state = 0;
    } else if (sscanf(text, "g%d", &g) != 1) {
        rbad = 3;
    }
    if (l->ngot < RLIST)
        l->got[l->ngot++] = m->flags & SHK_CHAN_MSG_DELETED ? -1 : g;
}

START_TEST(randomized_against_a_model)
{
    uint64_t seed = tu_seed("randomized_against_a_model"), rs = seed;
    shk_chan_opts_t o = {.store_messages = 1, .max_stored = RSTORE, .inactivity_ms = -1};
    shk_chan_sub_t *subs[RNS];
    struct {
        int n;
        int g[RSTORE];
        shk_chan_msgid_t id[RSTORE];
    } win[RNC];
    int exists[RNC] = {0}, gcount = 0;
    long steps = tu_scale(3000, 6);
    char name[16], data[16];
    shk_chan_info_t info;

    model = calloc(RNS, sizeof *model);
    memset(win, 0, sizeof win);
    rbad = 0;
    make_store(8 * MB, 1, 4096, &o); /* a small queue: alerts get missed */
    join_here(0);
    for (int i = 0; i < RNS; i++)
        subs[i] = shk_chan_sub_new(ch, on_model, (void *)(intptr_t)i);
    /* one subscriber first, and a burst at step 0: its queue overflows */
    ck_assert_int_eq(shk_chan_sub_add(subs[0], "r0", NULL), SHK_OK);
    model[0][0].state = 1;
    exists[0] = 1;
    for (long step = 0; step < steps; step++) {
        int op = (int)(tu_rand(&rs) % 100), c = (int)(tu_rand(&rs) % RNC),
            i = (int)(tu_rand(&rs) % RNS), rc;
        if (step == 0) {
            op = 96;
            c = 0;
        }
        snprintf(name, sizeof name, "r%d", c);
        if (op < 45 || op == 96 || op == 97) {
            /* one publish, or a burst of 40 with no dispatch between */
            for (int b = 0; b < (op < 45 ? 1 : 40); b++) {
                int g = gcount++;
                snprintf(data, sizeof data, "g%d", g);
                rc = shk_chan_publish(ch, name, data, strlen(data), NULL, NULL, &info);
                ck_assert_msg(rc == SHK_OK, "step %ld: %s", step, shk_last_errmsg());
                exists[c] = 1;
                for (int j = 0; j < RNS; j++)
                    if (model[j][c].state == 1 && model[j][c].nexp < RLIST)
                        model[j][c].exp[model[j][c].nexp++] = g;
                if (win[c].n == RSTORE) {
                    memmove(win[c].g, win[c].g + 1, (RSTORE - 1) * sizeof win[c].g[0]);
                    memmove(win[c].id, win[c].id + 1, (RSTORE - 1) * sizeof win[c].id[0]);
                    win[c].n--;
                }
                win[c].g[win[c].n] = g;
                win[c].id[win[c].n++] = info.last_id;
            }
        } else if (op < 65) {
            shk_chan_from_t f = {(int)(tu_rand(&rs) % 3), {0, 0}, 1 + (unsigned)(tu_rand(&rs) % 6)};
            int k = (int)(tu_rand(&rs) % (RSTORE + 1)), from = win[c].n;
            if (f.mode == SHK_CHAN_FROM_AFTER && k < win[c].n) {
                f.after = win[c].id[k];
                from = k + 1;
            } else if (f.mode == SHK_CHAN_FROM_AFTER) {
                from = 0; /* {0, 0}: every stored one */
            } else if (f.mode == SHK_CHAN_FROM_LAST) {
                from = win[c].n > (int)f.last ? win[c].n - (int)f.last : 0;
            }
            rlink_t *l = &model[i][c];
            int want = l->state ? SHK_EEXIST : SHK_OK;
            if (want == SHK_OK) {
                for (int x = from; x < win[c].n; x++)
                    l->exp[l->nexp++] = win[c].g[x];
                l->state = 1;
                exists[c] = 1;
            }
            rc = shk_chan_sub_add(subs[i], name, &f);
            ck_assert_msg(rc == want, "step %ld: sub_add %d %s: %s", step, i, name,
                          shk_err_name(rc));
        } else if (op < 77) {
            rlink_t *l = &model[i][c];
            int want = l->state ? SHK_OK : SHK_ENOENT;
            /* What was delivered so far must be what was due; what was not
             * (its alert still queued, a deletion notice) will not come. */
            ck_assert_int_le(l->ngot, l->nexp);
            for (int x = 0; x < l->ngot; x++)
                ck_assert_msg(l->got[x] == l->exp[x], "seed %llu, step %ld: subscriber %d r%d #%d",
                              (unsigned long long)seed, step, i, c, x);
            l->nexp = l->ngot;
            l->state = 0;
            rc = shk_chan_sub_del(subs[i], name);
            ck_assert_msg(rc == want, "step %ld: sub_del: %s", step, shk_err_name(rc));
        } else if (op < 81) {
            int want = exists[c] ? SHK_OK : SHK_ENOENT;
            if (exists[c])
                for (int j = 0; j < RNS; j++)
                    if (model[j][c].state == 1) {
                        model[j][c].exp[model[j][c].nexp++] = -1;
                        model[j][c].state = 2;
                    }
            exists[c] = 0;
            win[c].n = 0;
            rc = shk_chan_delete(ch, name);
            ck_assert_msg(rc == want, "step %ld: delete: %s", step, shk_err_name(rc));
        } else if (op < 96) {
            /* fewer taken than published: the queue fills, alerts are missed */
            shk_bus_dispatch(bus, 1 + (unsigned)(tu_rand(&rs) % 3));
        } else {
            ck_assert_int_ge(shk_chan_tick(ch), 0);
        }
        ck_assert_msg(!rbad, "step %ld: bad delivery (%d)", step, rbad);
        if (step % 16 == 0)
            ck_assert_msg(shk_chan_check(ch) == SHK_OK, "step %ld: %s", step, shk_last_errmsg());
    }
    for (int round = 0; round < 1000; round++) {
        int n = shk_bus_dispatch(bus, 64);
        n += shk_chan_tick(ch);
        if (n == 0 && round > 2)
            break;
    }
    ck_assert(!rbad);
    for (int i = 0; i < RNS; i++)
        for (int c = 0; c < RNC; c++) {
            rlink_t *l = &model[i][c];
            if (l->ngot != l->nexp) {
                int x = 0;
                while (x < l->ngot && x < l->nexp && l->got[x] == l->exp[x])
                    x++;
                fprintf(stderr, "subscriber %d r%d: first difference at %d:\n got", i, c, x);
                for (int y = x > 3 ? x - 3 : 0; y < x + 6 && y < l->ngot; y++)
                    fprintf(stderr, " %d", l->got[y]);
                fprintf(stderr, "\n exp");
                for (int y = x > 3 ? x - 3 : 0; y < x + 6 && y < l->nexp; y++)
                    fprintf(stderr, " %d", l->exp[y]);
                fprintf(stderr, "\n");
            }
            ck_assert_msg(l->ngot == l->nexp, "seed %llu: subscriber %d, r%d: got %d, expected %d",
                          (unsigned long long)seed, i, c, l->ngot, l->nexp);
            for (int x = 0; x < l->nexp; x++)
                ck_assert_msg(l->got[x] == l->exp[x],
                              "seed %llu: subscriber %d, r%d, #%d: got %d, expected %d",
                              (unsigned long long)seed, i, c, x, l->got[x], l->exp[x]);
            ck_assert_int_ne(l->state, 2); /* every notice came */
        }
    for (int i = 0; i < RNS; i++)
        shk_chan_sub_free(subs[i]);
    shk_chan_stats_t st;
    ck_assert_int_eq(shk_chan_stats(ch, &st), SHK_OK);
    ck_assert_uint_eq(st.subscribers, 0);
    ck_assert_uint_eq(st.messages, st.stored);
    ck_assert_uint_gt(slot_of(ch, (unsigned)(0)).alerts_missed, 0);
    check_all();
    drop_store();
    free(model);
}
END_TEST

int main(void)
{
    for (int i = 0; i < NKIDS; i++)
        rdy[i].rd = rdy[i].wr = go[i].rd = go[i].wr = -1;
    Suite *s = suite_create("chan");
    TCase *tc = tcase_create("chan");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, publish_subscribe_one_process);
    tcase_add_test(tc, errors_and_limits);
    tcase_add_test(tc, publish_with_given_ids);
    tcase_add_test(tc, catch_up_by_id_and_count);
    tcase_add_test(tc, trim_drops_the_oldest_stored);
    tcase_add_test(tc, delete_with_subscribers);
    tcase_add_test(tc, records_reused_across_processes);
    tcase_add_test(tc, worker_killed_holding_the_lock);
    tcase_add_test(tc, zone_full_reclaims_then_refuses);
    tcase_add_test(tc, ttl_and_inactivity);
    tcase_add_test(tc, events_channel);
    tcase_add_test(tc, read_only_attached_and_iteration);
    tcase_add_test(tc, damaged_header_is_refused);
    tcase_add_test(tc, zone_bytes_per_stored_message);
    tcase_add_test(tc, randomized_against_a_model);
    tcase_add_test(tc, full_queue_loses_nothing);
    tcase_add_test(tc, worker_killed_leaves_no_reference);
    tcase_add_test(tc, four_workers_fan_out);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
