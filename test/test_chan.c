/*
 * test_chan.c: the channel store. Publish and subscribe in one process and
 * across 4 forked workers (every message to every subscriber once, in
 * order; a publisher that is a worker, one that is not, one with no bus at
 * all); catch-up by id and by count, atomically with the subscription;
 * every limit and error; the zone full (old stored messages reclaimed,
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
#include "util_test.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>

#define MB (1024u * 1024u)

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
    ck_assert_uint_eq(st.slot[0].alerts, 2);
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
    ck_assert_int_eq(shk_chan_sub_add(s5, "c", &(shk_chan_from_t){SHK_CHAN_FROM_AFTER, info.last_id, 0}),
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

/* ---- delete --------------------------------------------------------------------------- */

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

int main(void)
{
    Suite *s = suite_create("chan");
    TCase *tc = tcase_create("chan");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, publish_subscribe_one_process);
    tcase_add_test(tc, errors_and_limits);
    tcase_add_test(tc, catch_up_by_id_and_count);
    tcase_add_test(tc, delete_with_subscribers);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
