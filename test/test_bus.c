/*
 * test_bus.c: the bus: 4 forked workers exchanging unicast and broadcast
 * alerts (every alert accounted for, no duplicates, per-sender order); reply
 * and sender; every error code; a full queue drained and accepting again;
 * alerts of 0 bytes, 1 MiB and 64 MiB, and every byte of large ones around
 * the streaming copy's threshold at odd lengths and alignments; a producer
 * killed between claim and publish (found at a reap, and found with no reap);
 * a consumer killed with a full queue; consumers that sleep between bursts
 * (a lost wake-up would hang the test); a doorbell byte with no alert behind
 * it is drained; a worker killed at every step of a large alert's life (and
 * its sender and its reaper), with both policies, leaving no block behind;
 * a mapped bus that lies (headers, positions, records, blocks, the list).
 */
#include "shmkit.h"
#include "util_test.h"

#include "shk_bus_internal.h" /* shk_bus_set_claim_hook, the layout for the damage tests */

#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/wait.h>

#define MB (1024u * 1024u)

static shk_zones_t *reg;
static shk_zone_t *zone;
static shk_bus_t *bus;

static void make_bus(size_t zone_size, unsigned slots, size_t queue)
{
    reg = shk_zones_new(NULL);
    zone = shk_zone_add(reg, "bus", zone_size, "test");
    ck_assert_ptr_nonnull(zone);
    ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
    bus = shk_bus_create(zone, slots, queue);
    ck_assert_msg(bus != NULL, "%s", shk_last_errmsg());
}

static void drop_bus(void)
{
    shk_bus_close(bus);
    shk_zones_free(reg);
    bus = NULL;
    reg = NULL;
}

/* ---- 4 workers, unicast and broadcast ---------------------------------------- */

#define W 4

typedef struct {
    int sender;
    int kind; /* 0 unicast, 1 broadcast */
    uint64_t seq;
} msg_t;

typedef struct {
    _Atomic int ready;
    pid_t pids[W];
} shared_t;

static shared_t *sh;
static tu_pipe_t go[W], leave[W], done;
static long n_uni, n_bc;

typedef struct {
    uint64_t next_uni[W], next_bc[W];
    long got;
    int bad;
} rx_t;

static void on_msg(shk_bus_t *b, const char *name, const void *data, size_t len, void *ctx)
{
    rx_t *rx = ctx;
    msg_t m;
    (void)name;
    if (len != sizeof m) {
        rx->bad = 1;
        return;
    }
    memcpy(&m, data, sizeof m);
    if (m.sender < 0 || m.sender >= W || shk_bus_sender(b) != sh->pids[m.sender]) {
        rx->bad = 2;
        return;
    }
    uint64_t *next = m.kind ? &rx->next_bc[m.sender] : &rx->next_uni[m.sender];
    if (m.seq != *next) {
        fprintf(stderr, "worker got seq %llu from %d (kind %d), expected %llu\n",
                (unsigned long long)m.seq, m.sender, m.kind, (unsigned long long)*next);
        rx->bad = 3;
    }
    *next = m.seq + 1;
    rx->got++;
}

static int exchange_worker(void *arg)
{
    int me = (int)(intptr_t)arg;
    rx_t rx = {0};
    long expect = 3 * n_uni + W * n_bc;
    uint64_t useq[W] = {0}, bseq = 0;
    long sent_uni = 0;

    TU_CHECK(shk_bus_join(bus, (unsigned)me) == SHK_OK, "%s", shk_last_errmsg());
    TU_CHECK(shk_bus_on(bus, "m", on_msg, &rx) == SHK_OK, "on");
    sh->ready++;
    TU_CHECK(tu_await(&go[me]) == 0, "go");
    while (sent_uni < 3 * n_uni || (long)bseq < n_bc) {
        msg_t m = {me, 0, 0};
        int rc;
        if ((long)bseq < n_bc && (sent_uni % 3 == 0 || sent_uni >= 3 * n_uni)) {
            m.kind = 1;
            m.seq = bseq;
            shk_bus_bcast_t res;
            rc = shk_bus_broadcast(bus, "m", &m, sizeof m, &res);
            TU_CHECK(rc == SHK_OK || rc == SHK_EAGAIN, "broadcast: %s", shk_strerror(rc));
            /* slots whose queue was full get the same alert again, alone,
             * so every receiver still sees each broadcast once, in order */
            for (int t = 0; t < W; t++)
                while (res.failed >> t & 1) {
                    shk_bus_dispatch(bus, 256);
                    int r2 = shk_bus_send(bus, sh->pids[t], "m", &m, sizeof m);
                    TU_CHECK(r2 == SHK_OK || r2 == SHK_EAGAIN, "resend: %s", shk_strerror(r2));
                    if (r2 == SHK_OK)
                        res.failed &= ~(1ULL << t);
                }
            bseq++;
        } else {
            int to = (me + 1 + (int)(sent_uni % 3)) % W;
            m.seq = useq[to];
            rc = shk_bus_send(bus, sh->pids[to], "m", &m, sizeof m);
            if (rc == SHK_OK) {
                useq[to]++;
                sent_uni++;
            } else {
                TU_CHECK(rc == SHK_EAGAIN, "send: %s", shk_strerror(rc));
            }
        }
        if (rc != SHK_OK || sent_uni % 16 == 0)
            shk_bus_dispatch(bus, 256);
        TU_CHECK(!rx.bad, "bad message (%d)", rx.bad);
    }
    while (rx.got < expect) {
        shk_bus_wait(bus, 1000);
        shk_bus_dispatch(bus, 256);
        TU_CHECK(!rx.bad, "bad message (%d)", rx.bad);
    }
    TU_CHECK(rx.got == expect, "got %ld, expected %ld", rx.got, expect);
    for (int s = 0; s < W; s++) {
        TU_CHECK(rx.next_bc[s] == (uint64_t)n_bc, "broadcasts from %d: %llu", s,
                 (unsigned long long)rx.next_bc[s]);
        if (s != me)
            TU_CHECK(rx.next_uni[s] == (uint64_t)n_uni, "unicasts from %d: %llu", s,
                     (unsigned long long)rx.next_uni[s]);
    }
    tu_signal(&done);
    tu_await(&leave[me]);
    return 0;
}

START_TEST(four_workers_exchange)
{
    n_uni = tu_scale(30000, 30);
    n_bc = tu_scale(10000, 30);
    make_bus(64 * MB, W, 1 * MB);
    sh = tu_shared(sizeof *sh);
    for (int i = 0; i < W; i++) {
        tu_pipe(&go[i]);
        tu_pipe(&leave[i]);
    }
    tu_pipe(&done);
    for (int i = 0; i < W; i++)
        sh->pids[i] = tu_fork(exchange_worker, (void *)(intptr_t)i);
    while (sh->ready < W)
        shk_cpu_relax();
    for (int i = 0; i < W; i++)
        tu_signal(&go[i]);
    for (int i = 0; i < W; i++)
        ck_assert_int_eq(tu_await(&done), 0);
    for (int i = 0; i < W; i++)
        tu_signal(&leave[i]);
    for (int i = 0; i < W; i++)
        tu_wait_ok(sh->pids[i]);
    shk_bus_stats_t st;
    ck_assert_int_eq(shk_bus_stats(bus, &st), SHK_OK);
    uint64_t rung = 0, coalesced = 0, received = 0;
    for (int i = 0; i < W; i++) {
        shk_bus_slot_stats_t q;
        ck_assert_int_eq(shk_bus_slot_stats(bus, (unsigned)i, &q), SHK_OK);
        rung += q.rung;
        coalesced += q.coalesced;
        received += q.received;
        ck_assert_uint_eq(q.depth, 0);
        ck_assert_uint_eq(q.skipped, 0);
    }
    ck_assert_uint_eq(received, (uint64_t)W * (3 * n_uni + W * n_bc));
    printf("four_workers_exchange: %llu alerts, %llu doorbells written, %llu coalesced\n",
           (unsigned long long)received, (unsigned long long)rung,
           (unsigned long long)coalesced);
    for (int i = 0; i < W; i++) {
        tu_pipe_close(&go[i]);
        tu_pipe_close(&leave[i]);
    }
    tu_pipe_close(&done);
    tu_unshare(sh, sizeof *sh);
    drop_bus();
}
END_TEST

/* ---- reply and sender ------------------------------------------------------------ */

static int pongs;
static pid_t pong_from;

static void on_ping(shk_bus_t *b, const char *name, const void *data, size_t len, void *ctx)
{
    (void)name;
    (void)ctx;
    char buf[64];
    int n = snprintf(buf, sizeof buf, "pong to %d: %.*s", (int)shk_bus_sender(b), (int)len,
                     (const char *)data);
    shk_bus_reply(b, "pong", buf, (size_t)n);
}

static void on_pong(shk_bus_t *b, const char *name, const void *data, size_t len, void *ctx)
{
    char *out = ctx;
    (void)name;
    memcpy(out, data, len);
    out[len] = '\0';
    pong_from = shk_bus_sender(b);
    pongs++;
}

static int ponger(void *arg)
{
    tu_pipe_t *ready = arg;
    TU_CHECK(shk_bus_join(bus, 1) == SHK_OK, "join");
    shk_bus_on(bus, "ping", on_ping, NULL);
    tu_signal(ready);
    for (int i = 0; i < 3;) {
        shk_bus_wait(bus, -1);
        i += shk_bus_dispatch(bus, SHK_BUS_BUDGET);
    }
    return 0;
}

START_TEST(reply_and_sender)
{
    char got[128];
    tu_pipe_t ready;
    make_bus(8 * MB, 2, 64 * 1024);
    ck_assert_int_eq(shk_bus_join(bus, 0), SHK_OK);
    ck_assert_int_eq(shk_bus_slot(bus), 0);
    ck_assert_int_eq(shk_bus_on(bus, "pong", on_pong, got), SHK_OK);
    ck_assert_int_eq(shk_bus_sender(bus), 0);
    ck_assert_int_eq(shk_bus_reply(bus, "x", "y", 1), SHK_EPERM);
    tu_pipe(&ready);
    pid_t child = tu_fork(ponger, &ready);
    ck_assert_int_eq(tu_await(&ready), 0);
    for (int i = 0; i < 3; i++) {
        char msg[16];
        snprintf(msg, sizeof msg, "n%d", i);
        ck_assert_int_eq(shk_bus_send(bus, child, "ping", msg, strlen(msg)), SHK_OK);
        int before = pongs;
        while (pongs == before) {
            shk_bus_wait(bus, -1);
            shk_bus_dispatch(bus, SHK_BUS_BUDGET);
        }
        char want[64];
        snprintf(want, sizeof want, "pong to %d: n%d", (int)getpid(), i);
        ck_assert_str_eq(got, want);
        ck_assert_int_eq(pong_from, child);
    }
    tu_wait_ok(child);
    tu_pipe_close(&ready);
    drop_bus();
}
END_TEST

/* ---- errors, full queue, sizes ------------------------------------------------------- */

static long received_bytes, received_count, zero_len_seen;
static unsigned char expect_pat;

static void on_count(shk_bus_t *b, const char *name, const void *data, size_t len, void *ctx)
{
    (void)b;
    (void)name;
    (void)ctx;
    const unsigned char *d = data;
    ck_assert_ptr_nonnull(data);
    if (len == 0)
        zero_len_seen++;
    for (size_t i = 0; i < len; i += 4093)
        ck_assert_uint_eq(d[i], (unsigned char)(expect_pat + i % 251));
    if (len)
        ck_assert_uint_eq(d[len - 1], (unsigned char)(expect_pat + (len - 1) % 251));
    received_bytes += (long)len;
    received_count++;
}

static void fill_pattern(unsigned char *p, size_t n, unsigned char pat)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)(pat + i % 251);
}

START_TEST(errors_and_full_queue)
{
    char name[SHK_BUS_NAME_MAX + 2];
    make_bus(4 * MB, 2, 16 * 1024);
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "x", "y", 1), SHK_ESRCH); /* not joined yet */
    ck_assert_int_eq(shk_bus_join(bus, 0), SHK_OK);
    ck_assert_int_eq(shk_bus_join(bus, 1), SHK_EBUSY);
    ck_assert_int_eq(shk_bus_on(bus, "c", on_count, NULL), SHK_OK);
    ck_assert_int_eq(shk_bus_dispatch(bus, 0), SHK_EINVAL); /* a budget of 0 alerts */
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "", "y", 1), SHK_EINVAL);
    ck_assert_int_eq(shk_bus_send(bus, getpid(), NULL, "y", 1), SHK_EINVAL);
    memset(name, 'n', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    ck_assert_int_eq(shk_bus_send(bus, getpid(), name, "y", 1), SHK_EINVAL);
    ck_assert_msg(strstr(shk_last_errmsg(), "longer than 254"), "%s", shk_last_errmsg());
    name[SHK_BUS_NAME_MAX] = '\0';
    ck_assert_int_eq(shk_bus_send(bus, getpid(), name, "y", 1), SHK_OK); /* 254 is fine */
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", "y", (size_t)SHK_BUS_DATA_MAX + 1),
                     SHK_EINVAL);
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", NULL, 5), SHK_EINVAL);
    ck_assert_int_eq(shk_bus_send(bus, 1, "c", "y", 1), SHK_ESRCH);
    ck_assert_int_eq(shk_bus_send(bus, 0, "c", "y", 1), SHK_ESRCH);
    ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 1); /* the 254-byte name: no handler */
    shk_bus_slot_stats_t st;
    shk_bus_slot_stats(bus, 0, &st);
    ck_assert_uint_eq(st.discarded, 1);

    /* fill the queue to the first EAGAIN, nothing half-written remains */
    unsigned char data[1000];
    expect_pat = 7;
    fill_pattern(data, sizeof data, expect_pat);
    int accepted = 0, rc;
    while ((rc = shk_bus_send(bus, getpid(), "c", data, sizeof data)) == SHK_OK)
        accepted++;
    ck_assert_int_eq(rc, SHK_EAGAIN);
    ck_assert_int_gt(accepted, 5);
    shk_bus_slot_stats(bus, 0, &st);
    ck_assert_uint_eq(st.depth, (uint64_t)accepted);
    ck_assert_uint_eq(st.rejected, 1);
    received_count = 0;
    while (shk_bus_dispatch(bus, 3) > 0)
        ;
    ck_assert_int_eq(received_count, accepted);
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", data, sizeof data), SHK_OK);
    ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 1);

    /* a large alert in a zone with no room for it */
    size_t big = 8 * MB;
    unsigned char *bigbuf = malloc(big);
    fill_pattern(bigbuf, big, expect_pat);
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", bigbuf, big), SHK_ENOMEM);
    free(bigbuf);
    ck_assert_int_eq(shk_slab_check(shk_zone_slab(zone)), SHK_OK);

    /* handler removal */
    ck_assert_int_eq(shk_bus_on(bus, "c", NULL, NULL), SHK_OK);
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", "y", 1), SHK_OK);
    received_count = 0;
    ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 1);
    ck_assert_int_eq(received_count, 0);
    drop_bus();
}
END_TEST

START_TEST(sizes_zero_1m_64m)
{
    size_t sizes[] = {0, 1, 4096, 1 * MB, 64 * MB};
    make_bus(160 * MB, 2, 256 * 1024);
    ck_assert_int_eq(shk_bus_join(bus, 0), SHK_OK);
    shk_bus_on(bus, "c", on_count, NULL);
    shk_slab_stats_t before, after;
    shk_slab_stats(shk_zone_slab(zone), &before);
    unsigned char *buf = malloc(64 * MB);
    expect_pat = 3;
    fill_pattern(buf, 64 * MB, expect_pat);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        received_bytes = received_count = zero_len_seen = 0;
        ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", buf, sizes[i]), SHK_OK);
        ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 1);
        ck_assert_int_eq(received_count, 1);
        ck_assert_int_eq(received_bytes, (long)sizes[i]);
        if (sizes[i] == 0)
            ck_assert_int_eq(zero_len_seen, 1);
    }
    free(buf);
    /* every large alert's storage went back to the slab */
    shk_slab_stats(shk_zone_slab(zone), &after);
    ck_assert_uint_eq(after.pages_free, before.pages_free);
    shk_bus_stats_t st;
    shk_bus_stats(bus, &st);
    ck_assert_uint_ge(st.large, 2);
    drop_bus();
}
END_TEST

/* Large data is copied into the zone with streaming stores from 512 KiB on:
 * every byte arrives, whatever the length and the source's alignment, and
 * nothing around the block is touched (the slab checks clean). */
static const unsigned char *expect_buf;

static void on_exact(shk_bus_t *b, const char *name, const void *data, size_t len, void *ctx)
{
    (void)b, (void)name, (void)ctx;
    ck_assert_int_eq(memcmp(data, expect_buf, len), 0);
    received_bytes += (long)len;
    received_count++;
}

START_TEST(large_copies_exact)
{
    size_t lens[] = {512 * 1024 - 1, 512 * 1024, 512 * 1024 + 1, MB + 63, 3 * MB + 17};
    size_t offs[] = {0, 1, 13, 64};
    make_bus(16 * MB, 2, 64 * 1024);
    ck_assert_int_eq(shk_bus_join(bus, 0), SHK_OK);
    shk_bus_on(bus, "c", on_exact, NULL);
    unsigned char *buf = malloc(4 * MB);
    fill_pattern(buf, 4 * MB, 5);
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (size_t j = 0; j < sizeof offs / sizeof offs[0]; j++) {
            received_bytes = received_count = 0;
            expect_buf = buf + offs[j];
            ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", buf + offs[j], lens[i]), SHK_OK);
            ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 1);
            ck_assert_int_eq(received_count, 1);
            ck_assert_int_eq(received_bytes, (long)lens[i]);
        }
    free(buf);
    ck_assert_int_eq(shk_slab_check(shk_zone_slab(zone)), SHK_OK);
    drop_bus();
}
END_TEST

static int large_receiver(void *arg)
{
    int slot = (int)(intptr_t)arg;
    TU_CHECK(shk_bus_join(bus, (unsigned)slot) == SHK_OK, "join");
    shk_bus_on(bus, "c", on_count, NULL);
    expect_pat = 9;
    received_count = 0;
    received_bytes = 0;
    sh->ready++;
    while (received_count < 2) {
        shk_bus_wait(bus, -1);
        shk_bus_dispatch(bus, SHK_BUS_BUDGET);
    }
    TU_CHECK(received_bytes == (long)(2 * MB), "bytes %ld", received_bytes);
    return 0;
}

START_TEST(large_broadcast_stored_once)
{
    make_bus(32 * MB, 3, 64 * 1024);
    sh = tu_shared(sizeof *sh);
    shk_slab_stats_t before, after;
    shk_slab_stats(shk_zone_slab(zone), &before);
    pid_t a = tu_fork(large_receiver, (void *)1), b = tu_fork(large_receiver, (void *)2);
    while (sh->ready < 2)
        shk_cpu_relax();
    unsigned char *buf = malloc(MB);
    fill_pattern(buf, MB, 9);
    shk_bus_bcast_t res;
    /* the master (not joined) broadcasts to both */
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(shk_bus_broadcast(bus, "c", buf, MB, &res), SHK_OK);
        ck_assert_uint_eq(res.targets, 2);
        ck_assert_uint_eq(res.delivered, 2);
        ck_assert_uint_eq(res.took, 0x6); /* slots 1 and 2 */
    }
    free(buf);
    tu_wait_ok(a);
    tu_wait_ok(b);
    shk_bus_stats_t st;
    shk_bus_stats(bus, &st);
    ck_assert_uint_eq(st.large, 2); /* stored once per broadcast, not per receiver */
    shk_slab_stats(shk_zone_slab(zone), &after);
    ck_assert_uint_eq(after.pages_free, before.pages_free);
    tu_unshare(sh, sizeof *sh);
    drop_bus();
}
END_TEST

/* ---- deaths ------------------------------------------------------------------------------- */

static tu_pipe_t claimed;

static void pause_in_claim(void *ctx)
{
    (void)ctx;
    tu_signal(&claimed);
    for (;;)
        pause();
}

static int dying_producer(void *arg)
{
    pid_t to = (pid_t)(intptr_t)arg;
    shk_bus_set_claim_hook(bus, pause_in_claim, NULL);
    shk_bus_send(bus, to, "c", "lost", 4);
    return 1; /* not reached */
}

/* Fork a producer that dies holding a claimed, unpublished record in our
 * queue; returns once it has claimed. */
/* A bus of one slot, joined by this process, counting alerts named "c". */
static void one_counting_slot(void)
{
    make_bus(4 * MB, 1, 16 * 1024);
    ck_assert_int_eq(shk_bus_join(bus, 0), SHK_OK);
    shk_bus_on(bus, "c", on_count, NULL);
}

static pid_t start_dying_producer(void)
{
    tu_pipe(&claimed);
    pid_t p = tu_fork(dying_producer, (void *)(intptr_t)getpid());
    ck_assert_int_eq(tu_await(&claimed), 0);
    return p;
}

/* After the hole: every live alert came through, the hole was skipped and
 * counted once, the queue is empty. */
static void assert_hole_skipped(long received)
{
    shk_bus_slot_stats_t st;
    ck_assert_int_eq(received_count, received);
    shk_bus_slot_stats(bus, 0, &st);
    ck_assert_uint_eq(st.skipped, 1);
    ck_assert_uint_eq(st.depth, 0);
    tu_pipe_close(&claimed);
}

START_TEST(producer_killed_between_claim_and_publish)
{
    one_counting_slot();
    expect_pat = 'b';
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", "b", 1), SHK_OK);
    pid_t p = start_dying_producer();
    /* the hole sits behind "b"; an alert queued after it waits behind it */
    expect_pat = 'b';
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", "b", 1), SHK_OK);
    received_count = 0;
    /* stops at the live producer's record */
    ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 1);
    kill(p, SIGKILL);
    ck_assert_int_eq(tu_wait(p), 128 + SIGKILL);
    ck_assert_int_eq(shk_bus_reap(bus, p), SHK_ESRCH); /* it held no slot */
    ck_assert_int_eq(shk_bus_wait(bus, 0), 1);           /* the reap rang */
    ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 1);
    assert_hole_skipped(2);
    drop_bus();
}
END_TEST

/* The same hole, but nobody reaps the dead producer: the consumer finds it
 * by itself when it is about to give up on the unpublished record (the
 * liveness check that is kept off the hot path). */
START_TEST(hole_skipped_without_reap)
{
    one_counting_slot();
    pid_t p = start_dying_producer();
    kill(p, SIGKILL);
    ck_assert_int_eq(tu_wait(p), 128 + SIGKILL);
    expect_pat = 'b';
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", "b", 1), SHK_OK);
    received_count = 0;
    ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 1);
    assert_hole_skipped(1);
    drop_bus();
}
END_TEST

/* A doorbell byte with no alert behind it (here the ring every reap makes)
 * is drained by the dispatch that finds nothing, so a level-triggered event
 * loop does not keep waking up; and a wake-up's byte is drained too. */
START_TEST(stray_doorbell_drained)
{
    one_counting_slot();
    struct pollfd p = {shk_bus_fd(bus), POLLIN, 0};
    ck_assert_int_eq(shk_bus_reap(bus, 1), SHK_ESRCH); /* rings every joined slot */
    ck_assert_int_eq(poll(&p, 1, 0), 1);
    ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 0);
    ck_assert_int_eq(poll(&p, 1, 0), 0);
    /* asleep (announced), then an alert: it rings, and the byte goes */
    ck_assert_int_eq(shk_bus_wait(bus, 0), 0);
    expect_pat = 'b';
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", "b", 1), SHK_OK);
    ck_assert_int_eq(poll(&p, 1, 0), 1);
    received_count = 0;
    ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 1);
    ck_assert_int_eq(received_count, 1);
    ck_assert_int_eq(poll(&p, 1, 0), 0);
    shk_bus_slot_stats_t st;
    shk_bus_slot_stats(bus, 0, &st);
    ck_assert_uint_eq(st.rung, 1);
    drop_bus();
}
END_TEST

static int idle_consumer(void *arg)
{
    tu_pipe_t *ready = arg;
    TU_CHECK(shk_bus_join(bus, 1) == SHK_OK, "join");
    tu_signal(ready);
    for (;;)
        pause();
}

static int next_consumer(void *arg)
{
    long want = (long)(intptr_t)arg;
    TU_CHECK(shk_bus_join(bus, 1) == SHK_OK, "join: %s", shk_last_errmsg());
    shk_bus_on(bus, "c", on_count, NULL);
    expect_pat = 5;
    received_count = 0;
    shk_bus_dispatch(bus, 100000);
    TU_CHECK(received_count == want, "received %ld, expected %ld", received_count, want);
    shk_bus_slot_stats_t st;
    shk_bus_slot_stats(bus, 1, &st);
    TU_CHECK(st.stale == (uint64_t)want, "stale %llu", (unsigned long long)st.stale);
    return 0;
}

START_TEST(consumer_killed_with_full_queue)
{
    unsigned char data[500];
    fill_pattern(data, sizeof data, 5);
    for (int policy = SHK_BUS_KEEP; policy <= SHK_BUS_PURGE; policy++) {
        tu_pipe_t ready;
        make_bus(4 * MB, 2, 16 * 1024);
        shk_bus_set_policy(bus, policy);
        tu_pipe(&ready);
        pid_t c = tu_fork(idle_consumer, &ready);
        ck_assert_int_eq(tu_await(&ready), 0);
        long accepted = 0;
        while (shk_bus_send(bus, c, "c", data, sizeof data) == SHK_OK)
            accepted++;
        ck_assert_int_eq(shk_last_error(), SHK_EAGAIN);
        kill(c, SIGKILL);
        ck_assert_int_eq(tu_wait(c), 128 + SIGKILL);
        ck_assert_int_eq(shk_bus_reap(bus, c), SHK_OK);
        ck_assert_int_eq(shk_bus_send(bus, c, "c", data, 1), SHK_ESRCH);
        tu_wait_ok(tu_fork(next_consumer,
                           (void *)(intptr_t)(policy == SHK_BUS_KEEP ? accepted : 0)));
        ck_assert_int_eq(shk_slab_check(shk_zone_slab(zone)), SHK_OK);
        tu_pipe_close(&ready);
        drop_bus();
    }
}
END_TEST

/* ---- a death at every step of a large alert's life ------------------------------------------ */

/* Three workers take large alerts (unicast and broadcast) from the master;
 * the one in slot KV dies (kill -9, through the test-only step hook) at one
 * step of an alert's life, or while its alerts sit in its queue, or while
 * it is the sender of a broadcast half-way through the fan-out, or while
 * the master that reaps it dies half-way through the reap. The master
 * reaps it, a respawned worker takes its slot (and, with SHK_BUS_KEEP,
 * what is queued there), and then: every large block went back to the slab
 * (pages and shk_slab_check agree), nothing was freed twice (the slab says
 * so in its log), the other workers got each of their alerts exactly once,
 * and the victim's slot at least once (KEEP: one may come twice, the one
 * whose handler was running) or at most once (PURGE). */

#define KS 3              /* slots */
#define KV 1              /* the victim's slot */
#define KN 32             /* alert ids; KN - 1 is the victim's own broadcast */
#define KLEN (20 * 1024)  /* large: the queues are 64 KiB, large from 16 KiB */

enum { K_RECV, K_IDLE, K_SEND, K_REAP, K_RECV_SCRUB };

typedef struct {
    _Atomic int ready;
    _Atomic int bad;         /* payloads that did not check */
    _Atomic int slab_errors; /* errors the slab logged, in any process */
    _Atomic unsigned got[KS][KN];
} kill_sh_t;

static kill_sh_t *ks;
static int die_step, die_nth, die_count, die_scrub;
static tu_pipe_t kgo[KS]; /* the first workers take nothing before every alert is sent */
static tu_pipe_t kdie;    /* pids for the killer */

/* Kill -9 every pid that comes down the pipe, until it is closed. */
static int k_killer(void *arg)
{
    pid_t pid;
    (void)arg;
    close(kdie.wr);
    while (read(kdie.rd, &pid, sizeof pid) == sizeof pid)
        kill(pid, SIGKILL);
    return 0;
}

static void die_at(void *ctx, int step)
{
    (void)ctx;
    if (step == die_step && ++die_count == die_nth) {
        if (die_scrub) {
            /* as if it died inside the slab's free, after a debug build's
             * fill of the block: the journal names it, its header is gone */
            TU_CHECK(atomic_load(&bus->b->jop) == BUS_JOP_FREE, "journal");
            memset(shk_slab_ptr(shk_zone_slab(zone), atomic_load(&bus->b->joff)), 0x5a, 256);
        }
        /* stop right here and have the killer send SIGKILL (one we sent
         * ourselves would run memcheck's leak check on this heap) */
        pid_t me = getpid();
        if (write(kdie.wr, &me, sizeof me) == sizeof me)
            for (;;)
                pause();
        raise(SIGKILL);
    }
}

static void kill_log(void *ctx, int level, const char *msg)
{
    (void)ctx;
    if (level == SHK_LOG_ERR && strstr(msg, "slab pool") && !strstr(msg, "out of memory"))
        ks->slab_errors++;
}

static void k_fill(unsigned char *p, uint32_t id)
{
    memcpy(p, &id, 4);
    for (size_t i = 4; i < KLEN; i++)
        p[i] = (unsigned char)(id * 31 + i);
}

static void on_big(shk_bus_t *b, const char *name, const void *data, size_t len, void *ctx)
{
    const unsigned char *d = data;
    uint32_t id;
    (void)b, (void)name;
    if (len != KLEN) {
        ks->bad++;
        return;
    }
    memcpy(&id, d, 4);
    for (size_t i = 4; i < len && id < KN; i++)
        if (d[i] != (unsigned char)(id * 31 + i))
            id = KN;
    if (id >= KN) {
        ks->bad++;
        return;
    }
    ks->got[(intptr_t)ctx][id]++;
}

static int k_stopped;

static void on_kstop(shk_bus_t *b, const char *name, const void *data, size_t len, void *ctx)
{
    (void)b, (void)name, (void)data, (void)len, (void)ctx;
    k_stopped = 1;
}

/* The victim's own broadcast, asked for by the master (only the victim:
 * under KEEP its respawn gets the request again, and ignores it). */
static int k_may_bc;

static void on_bc(shk_bus_t *b, const char *name, const void *data, size_t len, void *ctx)
{
    (void)name, (void)data, (void)len, (void)ctx;
    if (!k_may_bc)
        return;
    unsigned char *buf = malloc(KLEN);
    k_fill(buf, KN - 1);
    shk_bus_broadcast(b, "big", buf, KLEN, NULL);
    free(buf);
}

/* A worker in slot (arg & 0xff); with 0x100 it sets the step hook, with
 * 0x200 it never dispatches (its alerts sit in its queue until it is
 * killed). It stops once a "stop" came and its queue is empty. */
static int k_worker(void *arg)
{
    int slot = (int)((intptr_t)arg & 0xff);
    TU_CHECK(shk_bus_join(bus, (unsigned)slot) == SHK_OK, "join: %s", shk_last_errmsg());
    shk_bus_on(bus, "big", on_big, (void *)(intptr_t)slot);
    shk_bus_on(bus, "stop", on_kstop, NULL);
    shk_bus_on(bus, "bc", on_bc, NULL);
    k_may_bc = ((intptr_t)arg & 0x100) != 0;
    if (k_may_bc)
        shk_bus_set_step_hook(bus, die_at, NULL);
    ks->ready++;
    if ((intptr_t)arg & 0x200)
        for (;;)
            pause();
    if ((intptr_t)arg & 0x400)
        TU_CHECK(tu_await(&kgo[slot]) == 0, "go");
    bus_queue_t *q = &bus->b->slots[slot];
    k_stopped = 0;
    while (!k_stopped || atomic_load(&q->tail) != atomic_load(&q->head)) {
        shk_bus_wait(bus, 100);
        shk_bus_dispatch(bus, SHK_BUS_BUDGET);
    }
    return 0;
}

/* The master dying half-way through a reap: a child that reaps with the
 * step hook set. */
static int k_reaper(void *arg)
{
    shk_bus_set_step_hook(bus, die_at, NULL);
    shk_bus_reap(bus, (pid_t)(intptr_t)arg);
    return 0;
}

static void k_wait_ready(int n)
{
    while (ks->ready < n)
        shk_cpu_relax();
}

/* Wait for pid to end (exit or signal) without reaping it (a zombie keeps
 * its pid, as the supervisor's WNOWAIT does). */
static void k_wait_dead(pid_t pid)
{
    siginfo_t si;
    memset(&si, 0, sizeof si);
    ck_assert_int_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
}

typedef struct {
    const char *name;
    int kind, step, nth;
} kcase_t;

static void k_run(const kcase_t *c, int policy)
{
    unsigned expect[KS][KN];
    unsigned char *buf = malloc(KLEN);
    pid_t w[KS];
    shk_slab_stats_t before, after;

    memset(expect, 0, sizeof expect);
    memset(ks, 0, sizeof *ks);
    make_bus(8 * MB, KS, 64 * 1024);
    shk_bus_set_policy(bus, policy);
    shk_log_set(kill_log, NULL, SHK_LOG_ERR);
    shk_slab_stats(shk_zone_slab(zone), &before);
    tu_pipe(&kdie);
    pid_t killer = tu_fork(k_killer, NULL);
    die_step = c->step;
    die_nth = c->nth;
    die_count = 0;
    die_scrub = c->kind == K_RECV_SCRUB;
    for (int s = 0; s < KS; s++) {
        intptr_t a = s | 0x400;
        tu_pipe(&kgo[s]);
        if (s == KV && (c->kind == K_RECV || c->kind == K_SEND || c->kind == K_RECV_SCRUB))
            a |= 0x100;
        if (s == KV && (c->kind == K_IDLE || c->kind == K_REAP))
            a |= 0x200;
        w[s] = tu_fork(k_worker, (void *)a);
    }
    k_wait_ready(KS);
    /* broadcasts and unicasts, several of each to the victim */
    for (uint32_t id = 0; id < 12; id++) {
        k_fill(buf, id);
        if (id % 3 == 0) {
            shk_bus_bcast_t res;
            ck_assert_int_eq(shk_bus_broadcast(bus, "big", buf, KLEN, &res), SHK_OK);
            for (int s = 0; s < KS; s++)
                expect[s][id] = 1;
        } else {
            int s = id % 3 == 1 ? KV : id % 6 == 2 ? 0 : 2;
            ck_assert_int_eq(shk_bus_send(bus, w[s], "big", buf, KLEN), SHK_OK);
            expect[s][id] = 1;
        }
    }
    /* every record is in its queue, every block sealed: the receivers go
     * (the last one to let go of a block frees it) */
    for (int s = 0; s < KS; s++)
        tu_signal(&kgo[s]);
    if (c->kind == K_SEND) {
        /* the others stay until the victim's broadcast is in their queues */
        ck_assert_int_eq(shk_bus_send(bus, w[KV], "bc", "", 0), SHK_OK);
        k_wait_dead(w[KV]);
    }
    for (int s = 0; s < KS; s++)
        if (s != KV || c->kind != K_SEND)
            ck_assert_int_eq(shk_bus_send(bus, w[s], "stop", "", 0), SHK_OK);
    for (int s = 0; s < KS; s++)
        if (s != KV)
            tu_wait_ok(w[s]);
    if (c->kind == K_IDLE || c->kind == K_REAP)
        kill(w[KV], SIGKILL);
    k_wait_dead(w[KV]);
    if (c->kind == K_IDLE) {
        /* the stats say who holds what: every block still listed is one of
         * the victim's queued alerts, and its queue holds all of them */
        shk_bus_stats_t bst;
        shk_bus_slot_stats_t q;
        unsigned queued = 0;
        for (int id = 0; id < KN; id++)
            queued += expect[KV][id];
        ck_assert_int_eq(shk_bus_stats(bus, &bst), SHK_OK);
        ck_assert_int_eq(shk_bus_slot_stats(bus, KV, &q), SHK_OK);
        ck_assert_uint_eq(q.large_refs, queued);
        ck_assert_uint_ge(q.large_ref_bytes, (uint64_t)queued * KLEN);
        ck_assert_uint_eq(bst.large_live, queued);
        ck_assert_uint_eq(bst.large_bytes, q.large_ref_bytes);
        ck_assert_uint_eq(bst.large_sending, 0);
        ck_assert_int_eq(shk_bus_slot_stats(bus, 0, &q), SHK_OK);
        ck_assert_uint_eq(q.large_refs, 0);
    }
    if (c->kind == K_REAP) {
        die_count = 0;
        pid_t r = tu_fork_raw();
        if (r == 0)
            tu_exit(k_reaper((void *)(intptr_t)w[KV]));
        k_wait_dead(r);
        ck_assert_int_ge(shk_zone_recover(zone, r), 0);
        ck_assert_int_eq(shk_bus_reap(bus, r), SHK_ESRCH); /* it held no slot */
        ck_assert_int_eq(tu_wait(r), 128 + SIGKILL); /* it died at its step */
    }
    ck_assert_int_ge(shk_zone_recover(zone, w[KV]), 0);
    ck_assert_int_eq(shk_bus_reap(bus, w[KV]), SHK_OK);
    ck_assert_int_eq(tu_wait(w[KV]), 128 + SIGKILL); /* killed, or died at its step */
    /* the respawned worker: its own stop, whatever is left in the queue */
    ks->ready = 0;
    pid_t n = tu_fork(k_worker, (void *)(intptr_t)KV);
    k_wait_ready(1);
    ck_assert_int_eq(shk_bus_send(bus, n, "stop", "", 0), SHK_OK);
    tu_wait_ok(n);

    ck_assert_int_eq(ks->bad, 0);
    ck_assert_msg(ks->slab_errors == 0, "%s/%s: the slab logged %d errors (double free?)",
                  c->name, policy ? "purge" : "keep", ks->slab_errors);
    for (int s = 0; s < KS; s++)
        for (int id = 0; id < KN - 1; id++) {
            unsigned g = ks->got[s][id], e = expect[s][id];
            if (s != KV)
                ck_assert_msg(g == e, "%s: slot %d got alert %d %u times, not %u", c->name, s,
                              id, g, e);
            else if (policy == SHK_BUS_KEEP)
                ck_assert_msg(g >= e && g <= e + 1, "%s: victim's slot got alert %d %u times",
                              c->name, id, g);
            else
                ck_assert_msg(g <= e, "%s: victim's slot got alert %d %u times", c->name, id, g);
        }
    for (int s = 0; s < KS; s++)
        ck_assert_uint_le(ks->got[s][KN - 1], 1);
    ck_assert_int_eq(shk_slab_check(shk_zone_slab(zone)), SHK_OK);
    shk_bus_stats_t bst;
    ck_assert_int_eq(shk_bus_stats(bus, &bst), SHK_OK);
    ck_assert_uint_eq(bst.large_live, 0);
    ck_assert_uint_eq(bst.large_bytes, 0);
    ck_assert_uint_eq(bst.large_sending, 0);
    for (unsigned s = 0; s < KS; s++) {
        shk_bus_slot_stats_t q;
        ck_assert_int_eq(shk_bus_slot_stats(bus, s, &q), SHK_OK);
        ck_assert_uint_eq(q.large_refs, 0);
        ck_assert_uint_eq(q.large_ref_bytes, 0);
    }
    shk_slab_stats(shk_zone_slab(zone), &after);
    ck_assert_msg(after.pages_free == before.pages_free,
                  "%s/%s: %zu pages of large alerts were never freed", c->name,
                  policy ? "purge" : "keep", before.pages_free - after.pages_free);
    shk_log_set(NULL, NULL, SHK_LOG_ERR);
    close(kdie.wr);
    kdie.wr = -1;
    tu_wait_ok(killer);
    tu_pipe_close(&kdie);
    for (int s = 0; s < KS; s++)
        tu_pipe_close(&kgo[s]);
    free(buf);
    drop_bus();
}

static const kcase_t kcases[] = {
    {"idle with its alerts queued", K_IDLE, 0, 0},
    {"record taken, before the handler", K_RECV, SHK_BUS_STEP_TAKEN, 3},
    {"handler returned, head not moved", K_RECV, SHK_BUS_STEP_HANDLED, 3},
    {"head moved, block not let go", K_RECV, SHK_BUS_STEP_RELEASED, 3},
    {"freeing the block", K_RECV, SHK_BUS_STEP_FREEING, 1},
    {"freeing the block, its header scrubbed", K_RECV_SCRUB, SHK_BUS_STEP_FREEING, 1},
    {"sender: block allocated, no record", K_SEND, SHK_BUS_STEP_BLOB, 1},
    {"sender: half-way through a broadcast", K_SEND, SHK_BUS_STEP_FANOUT, 1},
    {"reaper: half-way through the purge", K_REAP, SHK_BUS_STEP_PURGE, 2},
    {"reaper: half-way through the sweep", K_REAP, SHK_BUS_STEP_SWEEP, 1},
};

START_TEST(killed_at_every_step_frees_every_block)
{
    const kcase_t *c = &kcases[_i / 2];
    int policy = _i % 2 ? SHK_BUS_PURGE : SHK_BUS_KEEP;
    if (c->kind == K_REAP && c->step == SHK_BUS_STEP_PURGE && policy != SHK_BUS_PURGE)
        return; /* nothing is purged under KEEP */
    printf("killed_at_every_step: %s, %s\n", c->name, policy ? "purge" : "keep");
    ks = tu_shared(sizeof *ks);
    k_run(c, policy);
    tu_unshare(ks, sizeof *ks);
}
END_TEST

/* ---- sleepy consumers ---------------------------------------------------------------------- */

typedef struct {
    _Atomic long got;
} sleepy_t;

static sleepy_t *sl;

static void on_tick(shk_bus_t *b, const char *name, const void *data, size_t len, void *ctx)
{
    (void)b, (void)name, (void)data, (void)len, (void)ctx;
    sl->got++;
}

static int sleepy_consumer(void *arg)
{
    long total = (long)(intptr_t)arg;
    TU_CHECK(shk_bus_join(bus, 0) == SHK_OK, "join");
    shk_bus_on(bus, "t", on_tick, NULL);
    sh->ready = 1;
    while (sl->got < total) {
        shk_bus_wait(bus, -1); /* a lost wake-up hangs here */
        shk_bus_dispatch(bus, SHK_BUS_BUDGET);
    }
    return 0;
}

START_TEST(sleepy_consumer_never_misses_a_wakeup)
{
    uint64_t r = tu_seed("sleepy_consumer_never_misses_a_wakeup");
    long rounds = tu_scale(3000, 30), total = 0;
    long *bursts = malloc((size_t)rounds * sizeof *bursts);
    for (long i = 0; i < rounds; i++)
        total += bursts[i] = 1 + (long)(tu_rand(&r) % 8);
    make_bus(4 * MB, 1, 64 * 1024);
    sh = tu_shared(sizeof *sh);
    sl = tu_shared(sizeof *sl);
    pid_t c = tu_fork(sleepy_consumer, (void *)(intptr_t)total);
    while (!sh->ready)
        shk_cpu_relax();
    long sent = 0;
    for (long i = 0; i < rounds; i++) {
        for (long k = 0; k < bursts[i]; k++) {
            while (shk_bus_send(bus, c, "t", "", 0) != SHK_OK)
                shk_cpu_relax();
            sent++;
        }
        /* let the consumer drain and go back to sleep before the next burst */
        while (sl->got < sent)
            shk_cpu_relax();
        for (uint64_t spin = tu_rand(&r) % 3000; spin; spin--)
            shk_cpu_relax();
    }
    tu_wait_ok(c);
    shk_bus_slot_stats_t st;
    shk_bus_slot_stats(bus, 0, &st);
    ck_assert_uint_eq(st.received, (uint64_t)total);
    printf("sleepy_consumer: %ld alerts in %ld bursts, %llu doorbells\n", total, rounds,
           (unsigned long long)st.rung);
    ck_assert_uint_ge(st.rung, 1);
    free(bursts);
    tu_unshare(sh, sizeof *sh);
    tu_unshare(sl, sizeof *sl);
    drop_bus();
}
END_TEST

START_TEST(open_read_only_for_stats)
{
    make_bus(4 * MB, 3, 8192);
    ck_assert_ptr_null(shk_bus_create(zone, 2, 8192)); /* one bus per zone */
    ck_assert_int_eq(shk_last_error(), SHK_EINVAL);
    shk_bus_t *ro = shk_bus_open(zone, SHK_ZONE_RDONLY);
    ck_assert_ptr_nonnull(ro);
    shk_bus_stats_t st;
    shk_bus_slot_stats_t q;
    ck_assert_int_eq(shk_bus_stats(ro, &st), SHK_OK);
    ck_assert_uint_eq(st.nslots, 3);
    ck_assert_int_eq(shk_bus_slot_stats(ro, 0, &q), SHK_OK);
    ck_assert_uint_eq(q.queue_bytes, 8192);
    ck_assert_uint_eq(st.queue_bytes, 8192);
    ck_assert_uint_eq(st.joined, 0);
    ck_assert_int_eq(shk_bus_slot_stats(ro, 2, &q), SHK_OK);
    ck_assert_int_eq(shk_bus_slot_stats(ro, 3, &q), SHK_ENOENT); /* past the last slot */
    ck_assert_int_eq(shk_bus_slot_stats(ro, 0, NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_bus_slot_stats(NULL, 0, &q), SHK_EINVAL);
    ck_assert_int_eq(shk_bus_stats(ro, NULL), SHK_EINVAL);
    ck_assert_int_eq(shk_bus_send(ro, getpid(), "x", "", 0), SHK_EPERM);
    ck_assert_int_eq(shk_bus_join(ro, 0), SHK_EINVAL);
    shk_bus_close(ro);
    ck_assert_ptr_null(shk_bus_create(zone, 0, 8192));
    drop_bus();
}
END_TEST

/* ---- the zone a bus needs ------------------------------------------------------------------- */

/* A zone of exactly shk_bus_zone_size() takes the bus; one a queue and 8
 * pages smaller does not (the estimate is tight to a few pages). */
START_TEST(zone_size_is_enough)
{
    static const struct {
        unsigned slots;
        size_t queue;
    } shapes[] = {{1, 1}, {1, 4096}, {3, 8192}, {2, 100000}, {4, MB}, {16, 64 * 1024},
                  {64, 4096}, {64, 64 * 1024}};
    size_t ps = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        unsigned slots = shapes[k].slots;
        size_t size = shk_bus_zone_size(slots, shapes[k].queue), ring = 4096;
        while (ring < shapes[k].queue)
            ring <<= 1;
        ck_assert_uint_gt(size, (size_t)slots * ring);
        make_bus(size, slots, shapes[k].queue);
        ck_assert_int_eq(shk_slab_check(shk_zone_slab(zone)), SHK_OK);
        drop_bus();
        size_t small = size - SHK_ALIGN_UP(ring, ps) - 8 * ps;
        if (small < 8 * ps)
            continue;
        reg = shk_zones_new(NULL);
        zone = shk_zone_add(reg, "bus", small, "test");
        ck_assert_ptr_nonnull(zone);
        ck_assert_int_eq(shk_zones_create(reg, NULL), SHK_OK);
        ck_assert_msg(shk_bus_create(zone, slots, shapes[k].queue) == NULL,
                      "%u x %zu: a zone of %zu bytes took the bus (estimate %zu)", slots,
                      shapes[k].queue, small, size);
        ck_assert_int_eq(shk_last_error(), SHK_ENOMEM);
        shk_zones_free(reg);
        reg = NULL;
    }
    /* shapes shk_bus_create refuses */
    ck_assert_uint_eq(shk_bus_zone_size(0, 4096), 0);
    ck_assert_uint_eq(shk_bus_zone_size(SHK_BUS_MAX_SLOTS + 1, 4096), 0);
    ck_assert_uint_eq(shk_bus_zone_size(1, 0), 0);
    ck_assert_uint_eq(shk_bus_zone_size(1, ((size_t)2 << 30) + 1), 0);
    ck_assert_uint_gt(shk_bus_zone_size(2, (size_t)2 << 30), (size_t)4 << 30);
}
END_TEST

/* ---- a damaged mapping ------------------------------------------------------------------------ */

/* Every field of the header is checked before shk_bus_open trusts it, and
 * the error names the field. */
START_TEST(open_refuses_damaged_header)
{
    make_bus(4 * MB, 2, 8192);
    bus_hdr_t *b = shk_zone_root(zone, "bus");
    ck_assert_ptr_nonnull(b);
    struct {
        void *field;
        size_t len;
        uint64_t bad;
        const char *msg;
    } cases[] = {
        {&b->magic, 8, 0x1234, "bad magic"},
        {&b->version, 4, 2, "layout version 2"},
        {&b->size, 8, 64, "recorded size 64"},
        {&b->nslots, 4, 3, "recorded size"},
        {&b->queue_bytes, 8, 12345, "queue size 12345"},
        {&b->slots[1].ring_off, 8, 1ull << 40, "queue 1 is out of bounds"},
        {&b->slots[0].ring_size, 8, 4096, "queue 0 is out of bounds"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        unsigned char saved[8];
        memcpy(saved, cases[k].field, cases[k].len);
        memcpy(cases[k].field, &cases[k].bad, cases[k].len);
        ck_assert_ptr_null(shk_bus_open(zone, SHK_ZONE_RDONLY));
        ck_assert_int_eq(shk_last_error(), SHK_ECORRUPT);
        ck_assert_msg(strstr(shk_last_errmsg(), cases[k].msg), "case %zu: %s", k,
                      shk_last_errmsg());
        memcpy(cases[k].field, saved, cases[k].len);
    }
    shk_bus_t *ro = shk_bus_open(zone, SHK_ZONE_RDONLY);
    ck_assert_ptr_nonnull(ro);
    shk_bus_close(ro);
    drop_bus();
}
END_TEST

/* A record header that no producer could have written (a name longer than
 * the record, say) drops the queue, logged, instead of being read; the
 * stats of a queue whose positions are garbage read nothing outside it. */
START_TEST(damaged_queue_is_not_read)
{
    one_counting_slot();
    bus_hdr_t *b = shk_zone_root(zone, "bus");
    bus_queue_t *q = &b->slots[0];
    char *ring = shk_slab_ptr(shk_zone_slab(zone), q->ring_off);
    expect_pat = 'b';
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", "b", 1), SHK_OK);
    bus_rec_t *r = (bus_rec_t *)(ring + (atomic_load(&q->head) & (q->ring_size - 1)));
    r->name_len = 4000; /* in a 64-byte record: would overrun the name buffer */
    received_count = 0;
    ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 0);
    ck_assert_int_eq(received_count, 0);
    ck_assert_uint_eq(atomic_load(&q->head), atomic_load(&q->tail)); /* dropped */
    /* the queue works again */
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", "b", 1), SHK_OK);
    ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 1);
    ck_assert_int_eq(received_count, 1);

    /* stats with head and tail anywhere: no crash, no age */
    static const uint64_t pos[][2] = {{8, 72}, {16 * 1024 - 8, 16 * 1024 + 64},
                                      {1ull << 63, 1}, {64, 1ull << 40}};
    uint64_t h0 = atomic_load(&q->head), t0 = atomic_load(&q->tail);
    for (size_t k = 0; k < sizeof pos / sizeof pos[0]; k++) {
        shk_bus_slot_stats_t st;
        atomic_store(&q->head, pos[k][0]);
        atomic_store(&q->tail, pos[k][1]);
        ck_assert_int_eq(shk_bus_slot_stats(bus, 0, &st), SHK_OK);
        ck_assert_uint_eq(st.oldest_age_us, 0);
    }
    atomic_store(&q->head, h0);
    atomic_store(&q->tail, t0);
    drop_bus();
}
END_TEST

/* Every offset, length and count a consumer reads from the mapping is
 * checked: each way a queue or a large alert's block can lie drops the queue
 * (or refuses the send) with a log line that names what was wrong, and
 * nothing is read or written outside the ring and the slab: no crash, the
 * pool checks sound, and where only the queue lied, no block is lost. */
static char last_err[2048]; /* every error logged, one a line */

static void keep_err(void *ctx, int level, const char *msg)
{
    (void)ctx;
    size_t n = strlen(last_err);
    if (level == SHK_LOG_ERR && n < sizeof last_err - 2)
        snprintf(last_err + n, sizeof last_err - n, "%s\n", msg);
}

enum {
    F_HEAD_MISALIGNED, F_HEAD_PAST_TAIL, F_TAIL_FAR, F_LEN_PAST_RING, F_LEN_PAST_TAIL, F_STATE,
    F_NAME_LEN, F_DATA_LEN, F_LARGE_BODY, F_BLOB_OUTSIDE, F_BLOB_RING, F_BLOB_INSIDE, F_BLOB_ID,
    F_BLOB_POS, F_BLOB_TARGETS, F_BLOB_LEN, F_BLOB_DATA_LEN, F_NCASES
};

static const struct {
    const char *log;  /* what the log line must say */
    int first_large;  /* the case is about the large record (queued first) */
    int keeps_blocks; /* the block itself was damaged: it may stay */
} fcases[F_NCASES] = {
    [F_HEAD_MISALIGNED] = {"not a multiple of 64", 0, 0},
    [F_HEAD_PAST_TAIL] = {"more than a ring apart", 0, 0},
    [F_TAIL_FAR] = {"more than a ring apart", 0, 0},
    [F_LEN_PAST_RING] = {"past the ring's end or the tail", 0, 0},
    [F_LEN_PAST_TAIL] = {"past the ring's end or the tail", 0, 0},
    [F_STATE] = {"state unknown", 0, 0},
    [F_NAME_LEN] = {"name length", 0, 0},
    [F_DATA_LEN] = {"data length past the record", 0, 0},
    [F_LARGE_BODY] = {"body too short", 1, 0},
    [F_BLOB_OUTSIDE] = {"is not a block in the slab", 1, 0},
    [F_BLOB_RING] = {"is not a block in the slab", 1, 0},
    [F_BLOB_INSIDE] = {"is not a block in the slab", 1, 0},
    [F_BLOB_ID] = {"not the alert's (magic or id)", 1, 0},
    [F_BLOB_POS] = {"does not name this record", 1, 0},
    [F_BLOB_TARGETS] = {"is not a block in the slab", 1, 1},
    [F_BLOB_LEN] = {"is not a block in the slab", 1, 1},
    [F_BLOB_DATA_LEN] = {"the record says", 1, 0},
};

START_TEST(damaged_bus_is_input)
{
    int c = _i;
    unsigned char big[6000];
    fill_pattern(big, sizeof big, 'b');
    make_bus(4 * MB, 1, 16 * 1024); /* large alerts from 4 KiB */
    ck_assert_int_eq(shk_bus_join(bus, 0), SHK_OK);
    shk_bus_on(bus, "c", on_count, NULL);
    bus_hdr_t *b = shk_zone_root(zone, "bus");
    bus_queue_t *q = &b->slots[0];
    char *ring = shk_slab_ptr(shk_zone_slab(zone), q->ring_off);
    shk_slab_stats_t before, after;
    shk_slab_stats(shk_zone_slab(zone), &before);
    /* move the positions off 0 so that damage cannot hide behind it */
    expect_pat = 'b';
    for (int i = 0; i < 100; i++) {
        ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", big, 100), SHK_OK);
        if (i % 10 == 9)
            while (shk_bus_dispatch(bus, SHK_BUS_BUDGET) > 0)
                ;
    }
    if (fcases[c].first_large)
        ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", big, sizeof big), SHK_OK);
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", big, 10), SHK_OK);
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", big, sizeof big), SHK_OK);
    uint64_t h = atomic_load(&q->head), t = atomic_load(&q->tail), size = q->ring_size;
    bus_rec_t *r = (bus_rec_t *)(ring + (h & (size - 1)));
    uint64_t boff = 0;
    bus_blob_t *bl = NULL;
    if (fcases[c].first_large) {
        memcpy(&boff, (char *)(r + 1) + r->name_len, 8);
        bl = shk_slab_ptr(shk_zone_slab(zone), boff);
    }
    char *body = (char *)(r + 1) + r->name_len;
    switch (c) {
    case F_HEAD_MISALIGNED: atomic_store(&q->head, h + 8); break;
    case F_HEAD_PAST_TAIL: atomic_store(&q->head, t + 64); break;
    case F_TAIL_FAR: atomic_store(&q->tail, h + 2 * size); break;
    case F_LEN_PAST_RING: atomic_store(&r->word0, (2ull << 32) | (size & ~63ull)); break;
    case F_LEN_PAST_TAIL: atomic_store(&r->word0, (2ull << 32) | (t - h + 64)); break;
    case F_STATE: atomic_store(&r->word0, (7ull << 32) | (atomic_load(&r->word0) & 0xffffffffu)); break;
    case F_NAME_LEN: r->name_len = 4000; break;
    case F_DATA_LEN: r->data_len = 1ull << 40; break;
    case F_LARGE_BODY: r->name_len = (uint32_t)((atomic_load(&r->word0) & 0xffffffffu) - BUS_REC_HDR - 8); break;
    case F_BLOB_OUTSIDE: { uint64_t x = 1ull << 40; memcpy(body, &x, 8); break; }
    case F_BLOB_RING: memcpy(body, &q->ring_off, 8); break;
    case F_BLOB_INSIDE: { uint64_t x = boff + 4096; memcpy(body, &x, 8); break; }
    case F_BLOB_ID: { uint64_t x; memcpy(&x, body + 8, 8); x += 1; memcpy(body + 8, &x, 8); break; }
    case F_BLOB_POS: atomic_store(&bl->pos[0], h + 64); break;
    case F_BLOB_TARGETS: bl->targets = 1ull << 5; break;
    case F_BLOB_LEN: bl->len = 1ull << 40; break;
    case F_BLOB_DATA_LEN: r->data_len = sizeof big - 1; break;
    }
    last_err[0] = '\0';
    shk_log_set(keep_err, NULL, SHK_LOG_ERR);
    received_count = 0;
    ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 0);
    shk_bus_stats_t st;
    shk_bus_slot_stats_t qs;
    ck_assert_int_eq(shk_bus_stats(bus, &st), SHK_OK);
    ck_assert_int_eq(shk_bus_slot_stats(bus, 0, &qs), SHK_OK);
    shk_log_set(NULL, NULL, SHK_LOG_ERR);
    ck_assert_int_eq(received_count, 0);
    ck_assert_msg(strstr(last_err, fcases[c].log), "case %d: log \"%s\", wanted \"%s\"", c,
                  last_err, fcases[c].log);
    /* dropped: head is at the tail again, the queue works */
    ck_assert_uint_eq(atomic_load(&q->head), atomic_load(&q->tail));
    ck_assert_int_eq(shk_slab_check(shk_zone_slab(zone)), SHK_OK);
    if (!fcases[c].keeps_blocks) {
        shk_slab_stats(shk_zone_slab(zone), &after);
        ck_assert_msg(after.pages_free == before.pages_free, "case %d: %zu pages lost", c,
                      before.pages_free - after.pages_free);
        ck_assert_uint_eq(st.large_live, 0);
    }
    received_count = 0;
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", big, sizeof big), SHK_OK);
    ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 1);
    ck_assert_int_eq(received_count, 1);
    drop_bus();
}
END_TEST

/* A tail no claim could have made is refused by the sender (SHK_ECORRUPT)
 * before anything is written across the ring's end; a list of blocks that
 * leads nowhere, or around in a circle, is walked a bounded number of steps
 * by the stats and cut by the next change to it. */
START_TEST(damaged_tail_and_list)
{
    unsigned char big[6000];
    fill_pattern(big, sizeof big, 'b');
    make_bus(4 * MB, 1, 16 * 1024);
    ck_assert_int_eq(shk_bus_join(bus, 0), SHK_OK);
    shk_bus_on(bus, "c", on_count, NULL);
    bus_hdr_t *b = shk_zone_root(zone, "bus");
    bus_queue_t *q = &b->slots[0];
    atomic_store(&q->head, q->ring_size - 4);
    atomic_store(&q->tail, q->ring_size - 4);
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", big, 10), SHK_ECORRUPT);
    ck_assert_msg(strstr(shk_last_errmsg(), "tail 16380 is not a multiple of 64"), "%s",
                  shk_last_errmsg());
    atomic_store(&q->head, 0);
    atomic_store(&q->tail, 0);
    ck_assert_int_eq(shk_slab_check(shk_zone_slab(zone)), SHK_OK);

    /* two blocks queued; the list made a circle, then sent off into the void */
    expect_pat = 'b';
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", big, sizeof big), SHK_OK);
    ck_assert_int_eq(shk_bus_send(bus, getpid(), "c", big, sizeof big), SHK_OK);
    bus_blob_t *first = shk_slab_ptr(shk_zone_slab(zone), atomic_load(&b->blobs));
    uint64_t second = atomic_load(&first->next);
    atomic_store(&first->next, atomic_load(&b->blobs));
    shk_bus_stats_t st;
    shk_bus_slot_stats_t qs;
    ck_assert_int_eq(shk_bus_stats(bus, &st), SHK_OK);
    ck_assert_int_eq(shk_bus_slot_stats(bus, 0, &qs), SHK_OK);
    ck_assert_uint_le(qs.large_refs, 1 + shk_slab_size(shk_zone_slab(zone)) / 4096);
    atomic_store(&first->next, 12345);
    ck_assert_int_eq(shk_bus_slot_stats(bus, 0, &qs), SHK_OK);
    ck_assert_uint_eq(qs.large_refs, 1);
    atomic_store(&first->next, second);
    received_count = 0;
    ck_assert_int_eq(shk_bus_dispatch(bus, SHK_BUS_BUDGET), 2);
    ck_assert_int_eq(received_count, 2);
    ck_assert_int_eq(shk_bus_stats(bus, &st), SHK_OK);
    ck_assert_uint_eq(st.large_live, 0);
    ck_assert_int_eq(shk_slab_check(shk_zone_slab(zone)), SHK_OK);
    drop_bus();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("bus");
    TCase *tc = tcase_create("bus");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, errors_and_full_queue);
    tcase_add_test(tc, open_read_only_for_stats);
    tcase_add_test(tc, reply_and_sender);
    tcase_add_test(tc, sizes_zero_1m_64m);
    tcase_add_test(tc, large_copies_exact);
    tcase_add_test(tc, large_broadcast_stored_once);
    tcase_add_test(tc, producer_killed_between_claim_and_publish);
    tcase_add_test(tc, hole_skipped_without_reap);
    tcase_add_test(tc, stray_doorbell_drained);
    tcase_add_test(tc, consumer_killed_with_full_queue);
    tcase_add_loop_test(tc, killed_at_every_step_frees_every_block, 0,
                        (int)(2 * sizeof kcases / sizeof kcases[0]));
    tcase_add_test(tc, sleepy_consumer_never_misses_a_wakeup);
    tcase_add_test(tc, four_workers_exchange);
    tcase_add_test(tc, zone_size_is_enough);
    tcase_add_test(tc, open_refuses_damaged_header);
    tcase_add_test(tc, damaged_queue_is_not_read);
    tcase_add_loop_test(tc, damaged_bus_is_input, 0, F_NCASES);
    tcase_add_test(tc, damaged_tail_and_list);
    suite_add_tcase(s, tc);
    return tu_run(s);
}
