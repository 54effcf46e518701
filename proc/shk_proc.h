/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shk_proc.h: the master/worker supervisor.
 *
 * shk_master_run() reads a configuration file, creates the zones it
 * declares and a bus for the workers, opens the listening sockets it asks
 * for, forks `worker_processes` workers and then supervises them: a dead
 * worker's locks are taken back and its bus slot reaped before it is
 * respawned in the same slot (with growing backoff when it keeps dying at
 * start); SIGHUP reloads the configuration (zones whose name, size and tag
 * did not change keep their data); SIGQUIT stops gracefully, SIGTERM and
 * SIGINT stop fast. See docs/proc.md.
 *
 * The application supplies its directives and its worker function in a
 * shk_app_t. shk_app_main() gives it nginx's command line (-c, -t, -s, -v)
 * around shk_master_run(). Everything here is process-local.
 */
#ifndef SHK_PROC_H
#define SHK_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "shk_bus.h"
#include "shk_chan.h"
#include "shk_conf.h"
#include "shk_core.h"
#include "shk_redis.h"
#include "shk_zone.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One configuration generation: what one reading of the config file
 * declared (zones, workers, sockets) and the application's own settings. */
typedef struct shk_cycle_s shk_cycle_t;
/* A worker's view of its process: slot, generation, zones, bus. */
typedef struct shk_worker_s shk_worker_t;

#define SHK_PROC_MAX_WORKERS 64
#define SHK_PROC_MAX_LISTEN 16

typedef struct shk_app_s {
    const char *name; /* for log lines and the process title; NULL: "shmkit" */

    /* The application's directives (NULL-terminated table, may be NULL).
     * Handlers reach the generation being read with
     * shk_cycle_from_conf(cf), e.g. to declare zones in it. */
    const shk_conf_directive_t *directives;

    /* Per-generation settings: conf_create runs before the file is read and
     * returns the application's settings object (NULL is allowed when it
     * has none); conf_done runs after a successful read (final checks,
     * zone init callbacks) and may fail the read with an error status;
     * conf_free releases the object when the generation ends. Optional. */
    void *(*conf_create)(shk_cycle_t *cycle, void *ctx);
    int (*conf_done)(shk_cycle_t *cycle, void *conf, void *ctx);
    void (*conf_free)(void *conf, void *ctx);

    /* Runs in each worker after it joined its bus slot. Its return value is
     * the worker's exit status. It should watch shk_bus_fd() in its event
     * loop (calling shk_bus_dispatch()) and return once
     * shk_worker_quitting() is true and its current work is done; the stop
     * hook (shk_worker_on_stop) tells it when that happens. */
    int (*worker)(shk_worker_t *w, void *ctx);

    void *ctx; /* passed to every callback */

    /* For shk_app_main() only: the configuration file used when the
     * command line gives no -c (NULL: -c is required), and the version
     * -v prints (NULL: shmkit's). */
    const char *conf_path;
    const char *version;
} shk_app_t;

/* Options for shk_master_run(), all optional (zero means default). */
typedef struct shk_master_opts_s {
    /* Run with the master in this process and no daemonising (the only
     * mode: shmkit leaves daemonising to the service manager). */
    unsigned startup_backoff_ms;     /* first respawn delay after an early death: 100 */
    unsigned startup_backoff_max_ms; /* cap of the doubling delay: 5000 */
    unsigned early_death_ms;         /* a worker dying sooner than this after start counts as
                                        an early death: 1000 */
    unsigned fast_stop_ms;           /* after "terminate", SIGKILL stragglers after: 2000 */
    /* Called in the master after every state change (workers started,
     * reaped, reload done): used by tests and the demo to synchronise
     * without sleeping. May be NULL. */
    void (*on_event)(const char *event, pid_t pid, unsigned slot, void *ctx);
    void *event_ctx;
} shk_master_opts_t;

/*
 * Run a master: read conf_path, create the zones and the bus, open the
 * listening sockets, write the pid file (if configured), fork the workers,
 * then supervise them until stopped by SIGQUIT, SIGTERM or SIGINT. Returns
 * SHK_OK after a clean stop, or an error status if the first configuration
 * cannot be read or set up (nothing is left running then). Blocks SIGCHLD,
 * SIGHUP, SIGQUIT, SIGTERM, SIGINT and SIGUSR1 in the calling thread while it
 * runs. opts may be NULL.
 */
SHK_API int shk_master_run(const char *conf_path, const shk_app_t *app,
                           const shk_master_opts_t *opts);

/*
 * Read and check a configuration as the master would (built-in directives
 * and the application's; app NULL: the built-in ones only, as `shmkit
 * check` does), running conf_done but creating nothing: for `-t` style
 * checks. Returns SHK_OK or SHK_ECONF with the nginx-style message in
 * shk_last_errmsg() (or a handler's own status, e.g. SHK_ENOMEM).
 */
SHK_API int shk_master_check(const char *conf_path, const shk_app_t *app);

/*
 * The application's command line, nginx style: an application's main() can
 * be `return shk_app_main(argc, argv, &app, NULL);`. Options:
 *   -c FILE   the configuration file (default: app->conf_path)
 *   -t        test the configuration with the built-in directives and the
 *             application's, print "configuration file FILE test is
 *             successful" (stdout) or the error and "configuration file
 *             FILE test failed" (stderr); exit status 0 or 1
 *   -s SIGNAL reload, stop or quit: read the configuration for its `pid`
 *             file, read the running master's pid from it and send it
 *             SIGHUP, SIGTERM or SIGQUIT; exit status 0, or 1 with the
 *             reason on stderr (no pid directive, no pid file, a pid file
 *             that does not hold one process id from 1 to INT_MAX, no such
 *             process). The pid file is read as untrusted input: opened
 *             with O_NOFOLLOW, a regular file, at most 31 bytes, digits
 *             and one optional newline, range-checked before any cast.
 *   -v        print "NAME version VERSION (shmkit X)" and exit 0
 *   -h        print the usage and exit 0
 * Without -t, -s, -v or -h it runs shk_master_run(FILE, app, opts) and
 * returns 0 after a clean stop, 1 (with the error on stderr) otherwise. A
 * wrong command line prints the usage on stderr and returns 2. The return
 * value is the process's exit status.
 *
 * The library never prints, except here: this call's job is the command
 * line, so it writes to stdout and stderr because the application asked
 * it to run its command line. Logging still goes through shk_log().
 */
SHK_API int shk_app_main(int argc, char **argv, const shk_app_t *app,
                         const shk_master_opts_t *opts);

/* Register the supervisor's built-in directives (worker_processes, listen,
 * pid, worker_shutdown_timeout, bus_queue, channels, channels_redis) plus the zone
 * directives into cf
 * for `cycle`, for a program that reads a configuration with its own
 * reader and a cycle from shk_cycle_new. */
SHK_API int shk_proc_conf(shk_conf_t *cf, shk_cycle_t *cycle);

/* ---- a generation, for directive handlers --------------------------------- */

/* A fresh, empty generation (for tools that read a configuration); runs
 * the application's conf_create. */
SHK_API shk_cycle_t *shk_cycle_new(const shk_app_t *app);
SHK_API void shk_cycle_free(shk_cycle_t *cycle);
/* The generation a config reader fills (set as the reader's user pointer). */
SHK_API shk_cycle_t *shk_cycle_from_conf(shk_conf_t *cf);
/* Its zone registry: declare zones in it (shk_zone_add). */
SHK_API shk_zones_t *shk_cycle_zones(shk_cycle_t *cycle);
/* The application's settings object (from conf_create). */
SHK_API void *shk_cycle_app_conf(shk_cycle_t *cycle);
/* Configured worker count. */
SHK_API unsigned shk_cycle_workers(const shk_cycle_t *cycle);

/*
 * Declare the generation's channel store from the application's own
 * directives, as `channels SIZE key=value ...;` does (docs/proc.md): SIZE
 * bytes in the zone shmkit_chan, made by the master before the fork and
 * joined by every worker (shk_worker_chan), with `opts` copied (its strings
 * too; NULL: every default; slots 0: 2 x worker_processes, at most 63). Call
 * it from a directive handler or conf_done, before the generation starts; a
 * reload that keeps the zone applies the new limits as for `channels`.
 * SHK_OK; SHK_EINVAL (NULL cycle, size 0, an option shk_chan_create would
 * refuse: slots above 63, max_id_len above 255, max_message above
 * 4 GiB - 1, a bad wildcard prefix or events channel id); SHK_EEXIST (the
 * generation has a store already: a `channels` directive or an earlier
 * call). Process-local.
 */
SHK_API int shk_cycle_set_chan(shk_cycle_t *cycle, size_t size, const shk_chan_opts_t *opts);
/* Bytes of the channel store the generation declares (`channels` or
 * shk_cycle_set_chan), 0 if none. */
SHK_API size_t shk_cycle_chan_size(const shk_cycle_t *cycle);

/* ---- in a worker ----------------------------------------------------------- */

/* True once the master asked this worker to stop (quit or terminate). */
SHK_API int shk_worker_quitting(void);
/* True if the stop asked for is fast (terminate): drop current work. */
SHK_API int shk_worker_terminating(void);

/* Called (from shk_bus_dispatch, in the worker) when the master asks the
 * worker to stop; `fast` is 1 for terminate. Use it to break the event
 * loop. One hook per worker; a later call replaces it. */
SHK_API void shk_worker_on_stop(shk_worker_t *w, void (*fn)(shk_worker_t *w, int fast, void *ctx),
                                void *ctx);

/* A sibling (a worker of the same generation) started or died: `alive` 1
 * with its new pid, or 0 with the pid that died. Called from
 * shk_bus_dispatch, fed by alerts the master sends when it spawns and reaps
 * workers (as nginx's master tells its workers of a new sibling), so
 * nobody polls. Events come in order; the master keeps up to 32 for a
 * worker that cannot take them yet and then drops the oldest, but a worker
 * always hears of a death before the birth that replaces it. One hook per
 * worker; a later call replaces it. */
typedef void (*shk_worker_sibling_t)(shk_worker_t *w, unsigned slot, pid_t pid, int alive,
                                     void *ctx);
SHK_API void shk_worker_on_sibling(shk_worker_t *w, shk_worker_sibling_t fn, void *ctx);
/* What this worker knows of sibling `slot`: its pid, 0 if none (or this
 * worker's own slot). Known at start from the master's table as it was at
 * the fork, then kept by the sibling alerts. */
SHK_API pid_t shk_worker_sibling(const shk_worker_t *w, unsigned slot);

/* The generation's channel store (the `channels` directive), joined by
 * this worker before the application's worker function runs; NULL if the
 * configuration has none. Call shk_chan_tick() on it every
 * SHK_CHAN_TICK_MS. */
SHK_API shk_chan_t *shk_worker_chan(shk_worker_t *w);

/* With a channels_redis directive: this worker's publisher through the
 * generation's redis relay (docs/redis.md), made at the first call, owned
 * by the worker (do not close it); call shk_redis_tick() on it with the
 * channel store's tick. NULL (SHK_ENOENT) without the directive. */
SHK_API shk_redis_t *shk_worker_redis(shk_worker_t *w);

SHK_API unsigned shk_worker_slot(const shk_worker_t *w);
SHK_API uint64_t shk_worker_generation(const shk_worker_t *w);
SHK_API shk_bus_t *shk_worker_bus(shk_worker_t *w);
/* A zone of the worker's generation by name, NULL (SHK_ENOENT) if none. */
SHK_API shk_zone_t *shk_worker_zone(shk_worker_t *w, const char *name);
SHK_API shk_cycle_t *shk_worker_cycle(shk_worker_t *w);
/* The listening sockets, already bound and listening, non-blocking and
 * close-on-exec, in the order of the `listen` directives: the count, and
 * the descriptor of socket i (-1 past the end or for a NULL worker). The
 * worker may use the descriptors for as long as it runs; the master owns
 * them (do not close them). */
SHK_API unsigned shk_worker_nlisteners(const shk_worker_t *w);
SHK_API int shk_worker_listener(const shk_worker_t *w, unsigned i);

#ifdef __cplusplus
}
#endif

#endif /* SHK_PROC_H */
