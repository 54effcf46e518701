/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_master.c: the master. shk_master_run reads the first generation,
 * starts it, forks its workers and then sleeps in poll() on a signalfd:
 * SIGCHLD reaps dead workers (their channel store slot, locks and bus slot
 * are taken back while they are still zombies, their siblings are told, then
 * the slot is respawned, with a doubling delay
 * when a worker keeps dying at start), SIGHUP reloads into a new generation
 * while the old one retires, SIGQUIT stops gracefully and SIGTERM/SIGINT
 * fast. Timers (respawns due, stop deadlines, stop messages not yet
 * delivered) set the poll timeout. The pid file is written here.
 */
#include "shk_proc_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct master_s {
    const char *conf_path;
    const shk_app_t *app;
    shk_master_opts_t o;
    shk_cycle_t *cur;
    shk_cycle_t *old; /* retiring generations, newest first */
    uint64_t generation;
    int stopping; /* 1 graceful, 2 fast */
    int sfd;
    sigset_t oldmask;
} master_t;

/* Every generation of m, the current one first: for (cy = gen_first(m); cy;
 * cy = gen_next(m, cy)). */
static shk_cycle_t *gen_first(master_t *m)
{
    return m->cur ? m->cur : m->old;
}

static shk_cycle_t *gen_next(master_t *m, shk_cycle_t *cy)
{
    return cy == m->cur ? m->old : cy->next_old;
}

static void emit(master_t *m, const char *ev, pid_t pid, unsigned slot)
{
    if (m->o.on_event)
        m->o.on_event(ev, pid, slot, m->o.event_ctx);
}

/* ---- workers -------------------------------------------------------------------- */

/* ---- siblings ----------------------------------------------------------------------- */

/* The worker in slot `slot` of cy started (alive 1) or died: every other
 * running worker of cy is to be told, in order. */
static void note_sibling(shk_cycle_t *cy, unsigned slot, pid_t pid, int alive)
{
    if (shk_proc_is_relay(cy, slot))
        return; /* the redis relay is no worker's sibling */
    for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++) {
        shk_proc_slot_t *s = &cy->slots[i];
        if (i == slot || s->state != SHK_PROC_SLOT_RUNNING || shk_proc_is_relay(cy, i))
            continue;
        if (s->sib_n == SHK_PROC_SIB_QUEUE) { /* the oldest goes */
            s->sib_head = (s->sib_head + 1) % SHK_PROC_SIB_QUEUE;
            s->sib_n--;
        }
        s->sib_q[(s->sib_head + s->sib_n++) % SHK_PROC_SIB_QUEUE] =
            (shk_proc_sibling_msg_t){slot, (int32_t)pid, (uint32_t)alive};
    }
}

/* Send what is queued. A worker that has not joined its bus slot yet
 * (SHK_ESRCH) or whose queue is full (SHK_EAGAIN) is tried again by the
 * timers. Returns 1 while something is still queued. */
static int tell_siblings(shk_cycle_t *cy)
{
    int left = 0;
    for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++) {
        shk_proc_slot_t *s = &cy->slots[i];
        if (s->state != SHK_PROC_SLOT_RUNNING) {
            s->sib_n = 0;
            continue;
        }
        while (s->sib_n) {
            int rc = shk_bus_send(cy->bus, s->pid, SHK_PROC_ALERT_SIBLING, &s->sib_q[s->sib_head],
                                  sizeof s->sib_q[0]);
            if (rc == SHK_ESRCH || rc == SHK_EAGAIN)
                break;
            s->sib_head = (s->sib_head + 1) % SHK_PROC_SIB_QUEUE;
            s->sib_n--;
        }
        left |= s->sib_n != 0;
    }
    return left;
}

static int spawn(master_t *m, shk_cycle_t *cy, unsigned slot)
{
    shk_proc_slot_t *s = &cy->slots[slot];
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid < 0) {
        shk_log(SHK_LOG_ERR, "fork() for worker %u failed: %s", slot, strerror(errno));
        s->state = SHK_PROC_SLOT_WAITING;
        s->respawn_at = shk_time_ms() + 1000;
        return SHK_ESYS;
    }
    if (pid == 0) {
        shk_pid_refresh();
        shk_proc_worker_main(m->app, cy, slot, m->sfd, &m->oldmask);
    }
    s->state = SHK_PROC_SLOT_RUNNING;
    s->pid = pid;
    s->started_ms = shk_time_ms();
    s->quit_sent = 0;
    s->sib_n = 0; /* it read the table as it was at the fork */
    note_sibling(cy, slot, pid, 1);
    shk_log(SHK_LOG_NOTICE, "start worker process %d (slot %u, generation %llu)", (int)pid, slot,
            (unsigned long long)cy->generation);
    emit(m, "spawn", pid, slot);
    return SHK_OK;
}

static unsigned live_workers(const shk_cycle_t *cy)
{
    unsigned n = 0;
    for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++)
        n += cy->slots[i].state == SHK_PROC_SLOT_RUNNING;
    return n;
}

/* Ask every running worker of cy to stop (over the bus; SIGTERM for a
 * fast stop the bus cannot carry). */
static void tell_stop(shk_cycle_t *cy, int fast)
{
    for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++) {
        shk_proc_slot_t *s = &cy->slots[i];
        if (s->state != SHK_PROC_SLOT_RUNNING || s->quit_sent > fast)
            continue;
        int rc = shk_bus_send(cy->bus, s->pid,
                              fast ? SHK_PROC_ALERT_TERMINATE : SHK_PROC_ALERT_QUIT, "", 0);
        if (rc == SHK_OK || rc == SHK_ESRCH) {
            /* ESRCH: it has not joined yet or is dying; the reap or the
             * next round handles it. */
            if (rc == SHK_OK)
                s->quit_sent = fast ? 2 : 1;
        } else if (fast) {
            shk_log(SHK_LOG_WARN, "cannot tell worker %d to terminate (%s); sending SIGTERM",
                    (int)s->pid, shk_strerror(rc));
            kill(s->pid, SIGTERM);
            s->quit_sent = 2;
        }
    }
    if (fast)
        cy->fast = 1;
    cy->retiring = 1;
}

static void retire(shk_cycle_t *cy, int fast, unsigned grace_ms)
{
    tell_stop(cy, fast);
    if (grace_ms && !cy->deadline)
        cy->deadline = shk_time_ms() + grace_ms;
}

static shk_cycle_t *cycle_of(master_t *m, pid_t pid, unsigned *slot)
{
    for (shk_cycle_t *cy = gen_first(m); cy; cy = gen_next(m, cy))
        for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++)
            if (cy->slots[i].state == SHK_PROC_SLOT_RUNNING && cy->slots[i].pid == pid) {
                *slot = i;
                return cy;
            }
    return NULL;
}

static void recover_zones(master_t *m, pid_t pid)
{
    /* The channel stores first: a store whose lock the worker held is
     * checked there before the zone's recovery would just release it. */
    for (shk_cycle_t *cy = gen_first(m); cy; cy = gen_next(m, cy))
        if (cy->chan) {
            int rc = shk_chan_reap(cy->chan, pid);
            if (rc != SHK_OK && rc != SHK_ESRCH)
                shk_log(SHK_LOG_ERR, "channel store after worker %d: %s", (int)pid,
                        shk_last_errmsg());
        }
    for (shk_cycle_t *cy = gen_first(m); cy; cy = gen_next(m, cy)) {
        shk_zone_t *z;
        for (unsigned i = 0; (z = shk_zones_at(cy->zones, i)); i++)
            if (shk_zone_base(z))
                shk_zone_recover(z, pid);
    }
}

static void free_finished_old(master_t *m)
{
    shk_cycle_t **pp = &m->old;
    while (*pp) {
        shk_cycle_t *cy = *pp;
        if (live_workers(cy) == 0) {
            *pp = cy->next_old;
            shk_log(SHK_LOG_NOTICE, "generation %llu finished",
                    (unsigned long long)cy->generation);
            shk_cycle_free(cy);
        } else {
            pp = &cy->next_old;
        }
    }
}

/* The delay before respawning slot s of the current generation. */
static unsigned respawn_delay(master_t *m, shk_proc_slot_t *s, unsigned slot, uint64_t lived)
{
    unsigned delay;
    if (lived >= m->o.early_death_ms) {
        s->early_deaths = 0;
        return 0;
    }
    s->early_deaths++;
    delay = m->o.startup_backoff_ms;
    for (unsigned k = 1; k < s->early_deaths && delay < m->o.startup_backoff_max_ms; k++)
        delay *= 2;
    if (delay > m->o.startup_backoff_max_ms)
        delay = m->o.startup_backoff_max_ms;
    shk_log(SHK_LOG_WARN,
            "worker in slot %u died %u time%s in a row within %u ms of its start; "
            "respawning in %u ms",
            slot, s->early_deaths, s->early_deaths == 1 ? "" : "s", m->o.early_death_ms, delay);
    return delay;
}

static void reap(master_t *m)
{
    for (;;) {
        siginfo_t si;
        unsigned slot = 0;
        shk_cycle_t *cy;
        int st;

        memset(&si, 0, sizeof si);
        /* WNOWAIT: the dead worker stays a zombie, so its pid cannot be
         * reused by a new process while we release what it held. */
        if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0 || si.si_pid == 0)
            break;
        cy = cycle_of(m, si.si_pid, &slot);
        recover_zones(m, si.si_pid);
        if (cy && cy->bus)
            shk_bus_reap(cy->bus, si.si_pid);
        while (waitpid(si.si_pid, &st, 0) < 0 && errno == EINTR)
            ;
        if (!cy)
            continue; /* not one of ours (e.g. a child of the application) */

        shk_proc_slot_t *s = &cy->slots[slot];
        uint64_t now = shk_time_ms(), lived = now - s->started_ms;
        if (WIFSIGNALED(st))
            shk_log(SHK_LOG_ERR, "worker process %d exited on signal %d", (int)si.si_pid,
                    WTERMSIG(st));
        else if (WEXITSTATUS(st) != 0)
            shk_log(SHK_LOG_ERR, "worker process %d exited with code %d", (int)si.si_pid,
                    WEXITSTATUS(st));
        else
            shk_log(SHK_LOG_NOTICE, "worker process %d exited with code 0", (int)si.si_pid);
        s->state = SHK_PROC_SLOT_EMPTY;
        s->pid = 0;
        note_sibling(cy, slot, si.si_pid, 0);
        emit(m, "exit", si.si_pid, slot);

        if (cy != m->cur || cy->retiring || m->stopping)
            continue;
        /* Respawn in the same slot. */
        s->respawn_at = now + respawn_delay(m, s, slot, lived);
        s->state = SHK_PROC_SLOT_WAITING;
    }
    free_finished_old(m);
}

/* ---- the pid file ------------------------------------------------------------------- */

static void write_pid(const shk_cycle_t *cy)
{
    char line[32];
    int fd, n;
    if (!cy->pid_path[0])
        return;
    /* Never through a symbolic link: the path may sit in a shared
     * directory. shk_app_main reads it back the same way. */
    fd = open(cy->pid_path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd < 0) {
        shk_log(SHK_LOG_ERR, "cannot write pid file \"%s\": %s", cy->pid_path, strerror(errno));
        return;
    }
    n = snprintf(line, sizeof line, "%d\n", (int)getpid());
    if (write(fd, line, (size_t)n) != n)
        shk_log(SHK_LOG_ERR, "cannot write pid file \"%s\": %s", cy->pid_path, strerror(errno));
    close(fd);
}

/* ---- reload and stop ---------------------------------------------------------------- */

static void reload(master_t *m)
{
    shk_cycle_t *cy, *prev = m->cur;

    shk_log(SHK_LOG_NOTICE, "reconfiguring from %s", m->conf_path);
    cy = shk_cycle_read(m->conf_path, m->app);
    if (!cy || shk_cycle_start(cy, prev, m->generation + 1) != SHK_OK) {
        shk_log(SHK_LOG_ERR, "reload failed, the running configuration stays: %s",
                shk_last_errmsg());
        /* shk_cycle_start failed before the new registry adopted anything,
         * or shk_zones_create rolled back: freeing it leaves prev intact. */
        shk_cycle_free(cy);
        emit(m, "reload-failed", 0, 0);
        return;
    }
    m->generation++;
    if (strcmp(cy->pid_path, prev->pid_path) != 0) {
        if (prev->pid_path[0])
            unlink(prev->pid_path);
        write_pid(cy);
    }
    m->cur = cy;
    for (unsigned i = 0; i < shk_proc_nprocs(cy); i++)
        spawn(m, cy, i);
    prev->next_old = m->old;
    m->old = prev;
    retire(prev, 0, prev->shutdown_timeout_ms);
    shk_log(SHK_LOG_NOTICE, "reload done: generation %llu started, generation %llu retiring",
            (unsigned long long)cy->generation, (unsigned long long)prev->generation);
    emit(m, "reload", 0, 0);
}

static void begin_stop(master_t *m, int fast)
{
    if (m->stopping >= (fast ? 2 : 1))
        return;
    m->stopping = fast ? 2 : 1;
    shk_log(SHK_LOG_NOTICE, "%s stop requested", fast ? "fast" : "graceful");
    for (shk_cycle_t *cy = gen_first(m); cy; cy = gen_next(m, cy)) {
        cy->deadline = 0;
        retire(cy, fast, fast ? m->o.fast_stop_ms : cy->shutdown_timeout_ms);
        for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++)
            if (cy->slots[i].state == SHK_PROC_SLOT_WAITING)
                cy->slots[i].state = SHK_PROC_SLOT_EMPTY;
    }
    emit(m, fast ? "stopping-fast" : "stopping", 0, 0);
}

static int all_done(master_t *m)
{
    for (shk_cycle_t *cy = gen_first(m); cy; cy = gen_next(m, cy))
        if (live_workers(cy))
            return 0;
    return 1;
}

/* ---- timers ------------------------------------------------------------------------- */

/* SIGKILL cy's workers once its stop deadline has passed; lowers *next to
 * the deadline otherwise. */
static void run_deadline(shk_cycle_t *cy, uint64_t now, uint64_t *next)
{
    if (!cy->deadline || !live_workers(cy))
        return;
    if (cy->deadline > now) {
        if (cy->deadline < *next)
            *next = cy->deadline;
        return;
    }
    for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++)
        if (cy->slots[i].state == SHK_PROC_SLOT_RUNNING) {
            shk_log(SHK_LOG_WARN, "worker %d did not stop in time; killing it",
                    (int)cy->slots[i].pid);
            kill(cy->slots[i].pid, SIGKILL);
        }
    cy->deadline = 0;
}

/* Timers: respawns due, stop deadlines passed, quit messages not yet
 * delivered. Returns the poll timeout until the next one (-1: none). */
static int run_timers(master_t *m)
{
    uint64_t now = shk_time_ms(), next = UINT64_MAX;

    for (shk_cycle_t *cy = gen_first(m); cy; cy = gen_next(m, cy)) {
        for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++) {
            shk_proc_slot_t *s = &cy->slots[i];
            if (s->state == SHK_PROC_SLOT_WAITING && cy == m->cur && !cy->retiring &&
                !m->stopping) {
                if (s->respawn_at <= now)
                    spawn(m, cy, i);
                else if (s->respawn_at < next)
                    next = s->respawn_at;
            }
        }
        if (tell_siblings(cy) && now + 50 < next)
            next = now + 50;
        if (!cy->retiring)
            continue;
        tell_stop(cy, cy->fast); /* reaches workers that joined late */
        for (unsigned i = 0; i < SHK_PROC_MAX_WORKERS; i++)
            if (cy->slots[i].state == SHK_PROC_SLOT_RUNNING && !cy->slots[i].quit_sent &&
                now + 50 < next)
                next = now + 50;
        run_deadline(cy, now, &next);
    }
    if (next == UINT64_MAX)
        return -1;
    return next <= now ? 0 : (int)(next - now > INT_MAX ? INT_MAX : next - now);
}

/* ---- the run ------------------------------------------------------------------------ */

static void set_defaults(shk_master_opts_t *o)
{
    if (!o->startup_backoff_ms)
        o->startup_backoff_ms = 100;
    if (!o->startup_backoff_max_ms)
        o->startup_backoff_max_ms = 5000;
    if (!o->early_death_ms)
        o->early_death_ms = 1000;
    if (!o->fast_stop_ms)
        o->fast_stop_ms = 2000;
}

/* Poll the signalfd and act on what arrived, until every worker is gone
 * after a stop. */
static int supervise(master_t *m)
{
    for (;;) {
        int timeout = run_timers(m);
        struct pollfd pfd = {.fd = m->sfd, .events = POLLIN};
        struct signalfd_siginfo si;
        int chld = 0, hup = 0;

        if (m->stopping && all_done(m))
            return SHK_OK;
        if (poll(&pfd, 1, timeout) < 0 && errno != EINTR)
            return shk_error_sys("poll");
        while (read(m->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
            switch (si.ssi_signo) {
            case SIGCHLD: chld = 1; break;
            case SIGHUP: hup = 1; break;
            case SIGQUIT: begin_stop(m, 0); break;
            case SIGTERM:
            case SIGINT: begin_stop(m, 1); break;
            default: break;
            }
        }
        if (chld)
            reap(m);
        if (hup && !m->stopping)
            reload(m);
    }
}

int shk_master_run(const char *conf_path, const shk_app_t *app, const shk_master_opts_t *opts)
{
    master_t m;
    sigset_t set;
    int rc;

    memset(&m, 0, sizeof m);
    m.conf_path = conf_path;
    m.app = app;
    m.sfd = -1;
    if (opts)
        m.o = *opts;
    set_defaults(&m.o);
    if (!conf_path)
        return shk_error(SHK_EINVAL, "no configuration file");

    m.cur = shk_cycle_read(conf_path, app);
    if (!m.cur)
        return shk_last_error();

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGQUIT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    sigprocmask(SIG_BLOCK, &set, &m.oldmask);
    m.sfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (m.sfd < 0) {
        rc = shk_error_sys("signalfd");
        goto out;
    }
    rc = shk_cycle_start(m.cur, NULL, ++m.generation);
    if (rc != SHK_OK)
        goto out;
    write_pid(m.cur);
    shk_log(SHK_LOG_NOTICE, "%s master %d started: %u workers, generation %llu",
            shk_proc_app_name(app), (int)getpid(), m.cur->workers,
            (unsigned long long)m.cur->generation);
    for (unsigned i = 0; i < shk_proc_nprocs(m.cur); i++)
        spawn(&m, m.cur, i);
    emit(&m, "started", getpid(), 0);

    rc = supervise(&m);
    shk_log(SHK_LOG_NOTICE, "%s master %d exiting", shk_proc_app_name(app), (int)getpid());
    emit(&m, "stopped", getpid(), 0);

out:
    if (m.cur && m.cur->pid_path[0] && m.cur->bus)
        unlink(m.cur->pid_path);
    while (m.old) {
        shk_cycle_t *o = m.old;
        m.old = o->next_old;
        shk_cycle_free(o);
    }
    shk_cycle_free(m.cur);
    if (m.sfd >= 0)
        close(m.sfd);
    {
        /* Drop signals that arrived while blocked, then restore the mask. */
        struct timespec zero = {0, 0};
        while (sigtimedwait(&set, NULL, &zero) > 0)
            ;
    }
    sigprocmask(SIG_SETMASK, &m.oldmask, NULL);
    return rc;
}
