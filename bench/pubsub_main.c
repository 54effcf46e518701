/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * pubsub_main.c: the pub/sub load client's entry point and its parent
 * process. It forks the client processes (ps_worker_run), steers them
 * through the phases in shared memory — connect every connection; warm-up
 * (each publisher sends a sequence-0 message on each of its channels every
 * 200 ms until every subscriber has seen one, so each subscriber counts
 * from sequence 1); publishing; drain (until every expected delivery came
 * or none came for --drain-ms); done — samples the server's CPU time
 * around publishing and drain, sums what the processes report, and prints
 * the RESULT line and a summary.
 */
#include "pubsub.h"

#include "shk_atomic_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

ps_shared_t *ps_sh;

static pid_t *kids;
static uint32_t nkids, kids_failed;
static volatile sig_atomic_t stop_asked;

static void on_signal(int sig)
{
    (void)sig;
    stop_asked = 1;
}

static void nap_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Reaps children that ended early; 1 if any did. */
static int kids_lost(void)
{
    int st, lost = 0;
    for (uint32_t i = 0; i < nkids; i++) {
        if (kids[i] <= 0)
            continue;
        pid_t r = waitpid(kids[i], &st, WNOHANG);
        if (r == kids[i]) {
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "pubsub-client: process %u ended early (status %d)\n", i, st);
                kids_failed++;
                lost = 1;
            }
            kids[i] = 0;
        }
    }
    return lost;
}

static uint64_t sum_delivered(void)
{
    uint64_t t = 0;
    for (uint32_t i = 0; i < ps_sh->nproc; i++)
        t += SHK_READ_ONCE(ps_sh->slots[i].delivered);
    return t;
}

/* Waits until every slot's flag (at offset off) is set; 0, or -1 on timeout / failure. */
static int wait_all(size_t off, uint64_t limit_ms, const char *what)
{
    uint64_t t0 = ps_now_ns(), last_note = t0;
    for (;;) {
        uint32_t n = 0;
        for (uint32_t i = 0; i < ps_sh->nproc; i++) {
            _Atomic int *flag = (_Atomic int *)((char *)&ps_sh->slots[i] + off);
            /* Pairs with the process's release of the flag. */
            n += SHK_LOAD_ACQUIRE(*flag) != 0;
        }
        if (n == ps_sh->nproc)
            return 0;
        uint64_t now = ps_now_ns();
        if (stop_asked || kids_lost() || now - t0 > limit_ms * 1000000ull) {
            fprintf(stderr, "pubsub-client: %s: %u of %u processes after %.1f s%s\n", what, n,
                    ps_sh->nproc, (double)(now - t0) * 1e-9, stop_asked ? " (interrupted)" : "");
            return -1;
        }
        if (ps_opt.verbose && now - last_note > 1000000000ull) {
            fprintf(stderr, "pubsub-client: %s: %u/%u processes, %llu delivered\n", what, n,
                    ps_sh->nproc, (unsigned long long)sum_delivered());
            last_note = now;
        }
        nap_ms(2);
    }
}

static uint32_t sum_dead(size_t off)
{
    uint32_t t = 0;
    for (uint32_t i = 0; i < ps_sh->nproc; i++)
        t += SHK_READ_ONCE(*(_Atomic uint32_t *)((char *)&ps_sh->slots[i] + off));
    return t;
}

static int settle(void)
{
    uint64_t t0 = ps_now_ns();
    /* Nothing else is published with the phase here but the phase itself. */
    SHK_STORE_RELEASE(ps_sh->phase, PH_WARM);
    for (;;) {
        uint32_t warm = SHK_READ_ONCE(ps_sh->warm);
        uint32_t dead = sum_dead(offsetof(ps_slot_t, dead_subs));
        if (warm >= ps_opt.subscribers || (warm && warm + dead >= ps_opt.subscribers))
            return 0;
        if (dead >= ps_opt.subscribers) {
            fprintf(stderr, "pubsub-client: warm-up: every subscriber gave up\n");
            return -1;
        }
        uint64_t now = ps_now_ns();
        if (stop_asked || kids_lost() || now - t0 > (uint64_t)ps_opt.settle_ms * 1000000ull) {
            fprintf(stderr,
                    "pubsub-client: warm-up: %u of %u subscribers saw a warm-up message within "
                    "%u ms\n",
                    warm, ps_opt.subscribers, ps_opt.settle_ms);
            return -1;
        }
        nap_ms(2);
    }
}

/* After publishing: until the expected deliveries are in, or none came for drain_ms. */
static void drain(void)
{
    uint64_t expected = 0;
    uint32_t nch = ps_opt.channels, ns = ps_opt.subscribers;
    for (uint32_t c = 0; c < nch; c++) {
        uint64_t subs_on = ns / nch + (c < ns % nch);
        expected += subs_on * SHK_READ_ONCE(ps_sh->pub_ok[c]);
    }
    uint64_t last = sum_delivered(), t_change = ps_now_ns(), t0 = t_change;
    for (;;) {
        nap_ms(5);
        uint64_t d = sum_delivered(), now = ps_now_ns();
        if (d != last) {
            last = d;
            t_change = now;
        }
        uint64_t quiet_ms = d >= expected ? 100 : ps_opt.drain_ms;
        if (now - t_change > quiet_ms * 1000000ull || stop_asked || kids_lost() ||
            now - t0 > (uint64_t)ps_opt.timeout_s * 1000000000ull)
            return;
    }
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && !strcmp(argv[1], "--self-test"))
        return ps_selftest(argc >= 3 ? argv[2] : NULL);
    if (ps_opts_parse(argc, argv) < 0) {
        ps_opts_usage();
        return 2;
    }
    uint64_t conns = (uint64_t)ps_opt.subscribers + ps_opt.publishers;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    uint32_t nproc = 1;
    if (ps_opt.conns_per_proc)
        nproc = (uint32_t)((conns + ps_opt.conns_per_proc - 1) / ps_opt.conns_per_proc);
    if (nproc > 256) {
        fprintf(stderr, "pubsub-client: %u processes is too many (at most 256)\n", nproc);
        return 2;
    }
    size_t sz = sizeof(ps_shared_t) + (size_t)nproc * sizeof(ps_slot_t) +
                (size_t)ps_opt.channels * sizeof(_Atomic uint64_t) + 64;
    void *m = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        fprintf(stderr, "pubsub-client: mmap %zu bytes: %s\n", sz, strerror(errno));
        return 2;
    }
    ps_sh = m;
    ps_sh->nproc = nproc;
    ps_sh->slots = (ps_slot_t *)((char *)m + ((sizeof(ps_shared_t) + 63) & ~(size_t)63));
    ps_sh->pub_ok = (_Atomic uint64_t *)(ps_sh->slots + nproc);

    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    fflush(NULL);
    kids = calloc(nproc, sizeof *kids);
    if (!kids)
        return 2;
    for (uint32_t i = 0; i < nproc; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            fprintf(stderr, "pubsub-client: fork: %s\n", strerror(errno));
            SHK_STORE_RELEASE(ps_sh->phase, PH_DONE);
            nkids = i;
            break;
        }
        if (pid == 0) {
            signal(SIGINT, SIG_IGN); /* the parent ends the run */
            signal(SIGTERM, SIG_DFL);
            _exit(ps_worker_run(i));
        }
        kids[i] = pid;
        nkids = i + 1;
    }

    int failed = nkids < nproc;
    uint64_t limit_ms = (uint64_t)ps_opt.timeout_s * 1000;
    if (!failed && wait_all(offsetof(ps_slot_t, ready), limit_ms, "connecting") < 0)
        failed = 1;
    if (!failed && sum_dead(offsetof(ps_slot_t, dead_pubs))) {
        fprintf(stderr, "pubsub-client: a publisher could not connect\n");
        failed = 1;
    }
    if (!failed && ps_opt.settle && settle() < 0)
        failed = 1;
    double cpu0 = ps_opt.n_server_pids ? ps_cpu_tree(ps_opt.server_pids, ps_opt.n_server_pids) : 0;
    uint64_t start = ps_now_ns(), end = start;
    if (!failed) {
        SHK_WRITE_ONCE(ps_sh->start_ns, start);
        SHK_WRITE_ONCE(ps_sh->end_ns, start + (uint64_t)(ps_opt.duration_s * 1e9));
        /* The processes read start_ns/end_ns after their acquire of RUN. */
        SHK_STORE_RELEASE(ps_sh->phase, PH_RUN);
        uint64_t pub_limit = limit_ms + (uint64_t)(ps_opt.duration_s * 1000);
        if (ps_opt.rate > 0 && ps_opt.messages)
            pub_limit += (uint64_t)((double)ps_opt.messages * ps_opt.channels / ps_opt.rate * 1000);
        if (wait_all(offsetof(ps_slot_t, pub_done), pub_limit, "publishing") < 0)
            failed = 1;
        SHK_STORE_RELEASE(ps_sh->phase, PH_DRAIN);
        drain();
        end = ps_now_ns();
    }
    double cpu1 = ps_opt.n_server_pids ? ps_cpu_tree(ps_opt.server_pids, ps_opt.n_server_pids) : 0;
    /* Each process reads pub_ok and the other figures after its acquire of DONE. */
    SHK_STORE_RELEASE(ps_sh->phase, PH_DONE);

    ps_result_t tot;
    memset(&tot, 0, sizeof tot);
    uint64_t last_ack = 0, last_del = 0;
    for (uint32_t i = 0; i < nkids; i++) {
        int st;
        if (kids[i] > 0 && waitpid(kids[i], &st, 0) == kids[i] &&
            (!WIFEXITED(st) || WEXITSTATUS(st) != 0)) {
            fprintf(stderr, "pubsub-client: process %u failed (status %d)\n", i, st);
            kids_failed++;
        }
        ps_slot_t *sl = &ps_sh->slots[i];
        if (!SHK_LOAD_ACQUIRE(sl->finished))
            continue;
        ps_result_t *r = &sl->res;
        tot.published += r->published;
        tot.pub_sent += r->pub_sent;
        tot.pub_errors += r->pub_errors;
        tot.delivered += r->delivered;
        tot.got += r->got;
        tot.expected += r->expected;
        tot.lost += r->lost;
        tot.extra += r->extra;
        tot.dup += r->dup;
        tot.reord += r->reord;
        tot.stale += r->stale;
        tot.sub_errors += r->sub_errors;
        tot.reconnects += r->reconnects;
        tot.unanswered += r->unanswered;
        ps_hist_merge(&tot.lat, &r->lat);
        uint64_t a = SHK_READ_ONCE(sl->last_ack_ns), d = SHK_READ_ONCE(sl->last_delivery_ns);
        if (a > last_ack)
            last_ack = a;
        if (d > last_del)
            last_del = d;
    }
    struct rusage ru;
    getrusage(RUSAGE_CHILDREN, &ru);
    double client_cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 +
                        (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
    double pub_s = last_ack > start ? (double)(last_ack - start) * 1e-9 : 0;
    double del_s = last_del > start ? (double)(last_del - start) * 1e-9 : 0;
    double elapsed = (double)(end - start) * 1e-9;
    double server_cpu = cpu1 - cpu0;
    uint64_t errors = tot.pub_errors + tot.sub_errors + tot.unanswered + kids_failed + failed;

    printf("RESULT mode=%s channels=%u subscribers=%u publishers=%u size=%u rate=%.0f "
           "published=%llu publishes_per_s=%.1f delivered=%llu deliveries_per_s=%.1f "
           "expected=%llu lost=%llu duplicated=%llu reordered=%llu extra=%llu stale=%llu "
           "p50_us=%.1f p99_us=%.1f max_us=%.1f errors=%llu pub_errors=%llu sub_errors=%llu "
           "unanswered=%llu reconnects=%llu pub_s=%.3f elapsed_s=%.3f server_cpu_s=%.3f "
           "deliveries_per_server_cpu_s=%.0f client_cpu_s=%.2f\n",
           ps_mode_name(ps_opt.mode), ps_opt.channels, ps_opt.subscribers, ps_opt.publishers,
           ps_opt.size, ps_opt.rate, (unsigned long long)tot.published, ratio((double)tot.published, pub_s),
           (unsigned long long)tot.delivered, ratio((double)tot.delivered, del_s),
           (unsigned long long)tot.expected, (unsigned long long)tot.lost,
           (unsigned long long)tot.dup, (unsigned long long)tot.reord,
           (unsigned long long)tot.extra, (unsigned long long)tot.stale,
           (double)ps_hist_quantile(&tot.lat, 0.50) / 1e3,
           (double)ps_hist_quantile(&tot.lat, 0.99) / 1e3, (double)tot.lat.max / 1e3,
           (unsigned long long)errors, (unsigned long long)tot.pub_errors,
           (unsigned long long)tot.sub_errors, (unsigned long long)tot.unanswered,
           (unsigned long long)tot.reconnects, pub_s, elapsed, server_cpu,
           ratio((double)tot.delivered, server_cpu), client_cpu);
    fflush(stdout);
    if (!ps_opt.quiet) {
        fprintf(stderr,
                "pubsub-client: %s, %u channels, %u subscribers, %u publishers, %u-byte messages, "
                "%u process(es)\n"
                "  published %llu in %.2f s (%.0f/s); delivered %llu of %llu expected in %.2f s "
                "(%.0f/s)\n"
                "  lost %llu (%.2f%%), duplicated %llu, out of order %llu, extra %llu, "
                "another run's %llu\n"
                "  latency p50 %.1f us, p99 %.1f us, max %.1f us\n",
                ps_mode_name(ps_opt.mode), ps_opt.channels, ps_opt.subscribers,
                ps_opt.publishers, ps_opt.size, nproc, (unsigned long long)tot.published, pub_s,
                ratio((double)tot.published, pub_s), (unsigned long long)tot.delivered,
                (unsigned long long)tot.expected, del_s, ratio((double)tot.delivered, del_s),
                (unsigned long long)tot.lost, 100 * ratio((double)tot.lost, (double)tot.expected),
                (unsigned long long)tot.dup, (unsigned long long)tot.reord,
                (unsigned long long)tot.extra, (unsigned long long)tot.stale,
                (double)ps_hist_quantile(&tot.lat, 0.50) / 1e3,
                (double)ps_hist_quantile(&tot.lat, 0.99) / 1e3, (double)tot.lat.max / 1e3);
        if (ps_opt.n_server_pids)
            fprintf(stderr, "  server CPU %.2f s (%.0f deliveries per CPU-second); client CPU %.2f s\n",
                    server_cpu, ratio((double)tot.delivered, server_cpu), client_cpu);
        else
            fprintf(stderr, "  client CPU %.2f s\n", client_cpu);
        fprintf(stderr, "  errors %llu (publish %llu, subscribe %llu, unanswered %llu), "
                        "reconnections %llu\n",
                (unsigned long long)errors, (unsigned long long)tot.pub_errors,
                (unsigned long long)tot.sub_errors, (unsigned long long)tot.unanswered,
                (unsigned long long)tot.reconnects);
    }
    return errors ? 1 : 0;
}
