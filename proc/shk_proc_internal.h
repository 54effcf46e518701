/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_proc_internal.h: what the supervisor's files share: a generation (the
 * cycle: settings, sockets, worker slots), the worker handle, and the
 * functions one file calls in another. shk_cycle.c reads and starts a
 * generation, shk_master.c supervises generations, shk_worker.c is the
 * worker's side, shk_app.c the application's command line. Never
 * installed.
 */
#ifndef SHK_PROC_INTERNAL_H
#define SHK_PROC_INTERNAL_H

#include "shk_internal.h"
#include "shk_proc.h"
#include "shk_redis.h"

#include <limits.h>
#include <signal.h>

#define SHK_PROC_BUS_ZONE "shmkit_bus"
#define SHK_PROC_CHAN_ZONE "shmkit_chan"
#define SHK_PROC_ALERT_QUIT "shk:quit"
#define SHK_PROC_ALERT_TERMINATE "shk:terminate"
#define SHK_PROC_ALERT_SIBLING "shk:sibling"
#define SHK_PROC_DEFAULT_BUS_QUEUE (256u * 1024u)
#define SHK_PROC_DEFAULT_BUS_EXTRA (4u * 1024u * 1024u)

/* The alert a worker gets when a sibling of its generation starts or dies. */
typedef struct shk_proc_sibling_msg_s {
    uint32_t slot;
    int32_t pid;
    uint32_t alive; /* 1 started, 0 died */
} shk_proc_sibling_msg_t;

/* Sibling events the master keeps for a worker that cannot take them yet
 * (not joined, queue full); past it the oldest go (the worker's handler
 * stays consistent: a birth in a slot it knows as taken reports the death
 * it missed first). */
#define SHK_PROC_SIB_QUEUE 32

/* A worker slot's state. */
enum { SHK_PROC_SLOT_EMPTY, SHK_PROC_SLOT_RUNNING, SHK_PROC_SLOT_WAITING /* respawn due */ };

/* What a listener's `owned` says about its socket. */
enum {
    SHK_PROC_LISTEN_NOT_OWNED = 0, /* not this cycle's to close */
    SHK_PROC_LISTEN_OWNED = 1,     /* this cycle closes it */
    SHK_PROC_LISTEN_BORROWED = 2   /* the older cycle's until the reload commits */
};

typedef struct shk_proc_listener_s {
    char addr[128];
    int fd;
    int owned;
} shk_proc_listener_t;

typedef struct shk_proc_slot_s {
    int state;
    pid_t pid;
    uint64_t started_ms;
    uint64_t respawn_at;
    unsigned early_deaths;
    int quit_sent; /* 1: quit sent, 2: terminate sent */
    /* sibling events this worker has not been told yet, oldest first */
    shk_proc_sibling_msg_t sib_q[SHK_PROC_SIB_QUEUE];
    unsigned sib_head, sib_n;
} shk_proc_slot_t;

struct shk_cycle_s {
    /* what the configuration said (shk_cycle.c) */
    const shk_app_t *app;
    shk_zones_t *zones;
    unsigned workers;
    size_t bus_queue;
    size_t bus_extra;
    unsigned shutdown_timeout_ms; /* 0: wait for the workers */
    char pid_path[PATH_MAX];      /* "": no pid file */
    shk_proc_listener_t listen[SHK_PROC_MAX_LISTEN];
    unsigned nlisten;
    void *app_conf;
    shk_conf_directive_t dirs[9];

    /* the channel store (the channels directive); chan_size 0: none */
    size_t chan_size;
    shk_chan_opts_t chan_opts;
    char chan_prefix[SHK_CHAN_PREFIX_MAX + 1];
    char chan_events[SHK_CHAN_ID_MAX + 1];
    shk_zone_t *chan_zone;
    shk_chan_t *chan;

    /* channels across hosts (the channels_redis directive, shk_redis_proc.c):
     * a relay process in the bus slot after the workers' */
    int redis_on;
    shk_redis_opts_t redis_opts;
    char redis_url[SHK_REDIS_URL_MAX + 1];
    char redis_password[SHK_REDIS_PASSWORD_MAX + 1];
    char redis_ns[SHK_REDIS_NS_MAX + 1];

    /* set up by shk_cycle_start */
    uint64_t generation;
    shk_zone_t *bus_zone;
    shk_bus_t *bus;

    /* the master's view of its workers (shk_master.c) */
    shk_proc_slot_t slots[SHK_PROC_MAX_WORKERS];
    int retiring;      /* told to quit: no respawns */
    int fast;          /* told to terminate */
    uint64_t deadline; /* SIGKILL stragglers at this time (0: none) */
    struct shk_cycle_s *next_old;
};

struct shk_worker_s {
    shk_cycle_t *cycle;
    unsigned slot;
    void (*on_stop)(shk_worker_t *w, int fast, void *ctx);
    void *on_stop_ctx;
    shk_worker_sibling_t on_sibling;
    void *on_sibling_ctx;
    pid_t sib[SHK_PROC_MAX_WORKERS]; /* what this worker knows of its siblings */
    shk_redis_t *redis;              /* shk_worker_redis's publisher, made at first use */
};

/* ---- shk_cycle.c ------------------------------------------------------------ */

/* Read conf_path into a new cycle with the built-in directives and app's
 * (app may be NULL), run conf_done; nothing is created. NULL with the
 * reader's message (SHK_ECONF, or the handler's own status). */
SHK_HIDDEN shk_cycle_t *shk_cycle_read(const char *conf_path, const shk_app_t *app);

/* Bytes of a generation's bus zone: the one place this is computed. */
SHK_HIDDEN size_t shk_cycle_bus_size(const shk_cycle_t *cy);

/* A directive's duration parameter that must be positive (shk_cycle.c):
 * SHK_EINVAL for a bad one or 0. */
SHK_HIDDEN int shk_proc_parse_ms(const char *v, unsigned *out);

/* Set up a read cycle as generation `generation`: declare its bus zone,
 * open its sockets (taking over those of `old` with the same address),
 * create its zones (reusing old's by the reload rule) and its bus. On
 * failure nothing of `old` has changed and cy may be freed. */
SHK_HIDDEN int shk_cycle_start(shk_cycle_t *cy, shk_cycle_t *old, uint64_t generation);

/* The application's name for log lines and titles ("shmkit" by default). */
SHK_HIDDEN const char *shk_proc_app_name(const shk_app_t *app);

/* ---- shk_worker.c ----------------------------------------------------------- */

/* In a freshly forked child: become worker `slot` of cy and run the
 * application's worker; never returns. sfd is the master's signalfd (closed
 * here), oldmask the signal mask to restore. */
SHK_HIDDEN _Noreturn void shk_proc_worker_main(const shk_app_t *app, shk_cycle_t *cy,
                                               unsigned slot, int sfd, const sigset_t *oldmask);

/* A worker's (or the relay's) exit with `status`, never returns. */
SHK_HIDDEN _Noreturn void shk_proc_exit(shk_cycle_t *cy, int status);

/* ---- shk_redis_proc.c -------------------------------------------------------- */

/* The channels_redis directive's handler. */
SHK_HIDDEN int shk_proc_conf_redis(shk_conf_t *cf, int argc, char **argv, void *data);

/* After a successful read and the application's conf_done (which may
 * declare the store, shk_cycle_set_chan): channels_redis needs a store;
 * the relay takes the store's limits. SHK_OK or SHK_ECONF. */
SHK_HIDDEN int shk_proc_redis_done(shk_cycle_t *cy);

/* Processes the master runs for cy: its workers, and the relay after them
 * (slot cy->workers) when channels_redis is on. */
SHK_HIDDEN unsigned shk_proc_nprocs(const shk_cycle_t *cy);

/* 1 if slot `slot` of cy is the relay's. */
SHK_HIDDEN int shk_proc_is_relay(const shk_cycle_t *cy, unsigned slot);

/* In the relay's process, after it joined its bus slot: run the relay
 * until the master says stop; never returns. */
SHK_HIDDEN _Noreturn void shk_proc_relay_main(const shk_app_t *app, shk_cycle_t *cy,
                                              unsigned slot);

#endif /* SHK_PROC_INTERNAL_H */
