/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * demo_conf.h: the demo server's configuration (http and server blocks,
 * locations matched as nginx matches them, nginx-style request limiting,
 * push-stream's directives: push.h) and the limiter itself, which keeps its
 * state per client address in a red-black tree inside a shmkit zone, shared
 * by every worker. No libevent here.
 */
#ifndef DEMO_CONF_H
#define DEMO_CONF_H

#include <stddef.h>
#include <stdint.h>

#include "push.h"
#include "shmkit.h"

#define DEMO_MAX_LOCATIONS 32
#define DEMO_MAX_LIMIT_ZONES 16
#define DEMO_TAG "limit_req"

/* What the limiter decided for one request. */
enum { DEMO_LIMIT_PASS = 0, DEMO_LIMIT_DELAY = 1, DEMO_LIMIT_REJECT = 2 };

typedef struct demo_limit_zone_s demo_limit_zone_t;

/* How a location matches (nginx's modifiers). */
enum { DEMO_MATCH_PREFIX = 0, DEMO_MATCH_EXACT, DEMO_MATCH_NOREGEX, DEMO_MATCH_REGEX };

typedef struct demo_location_s {
    char path[256];  /* the prefix, the exact path or the regular expression */
    int match;       /* DEMO_MATCH_*: "", "=", "^~", "~" or "~*" */
    push_loc_t push; /* its push-stream settings (push.kind PUSH_NONE: none) */
    demo_limit_zone_t *zone; /* NULL: no limit */
    char zone_name[SHK_ZONE_NAME_MAX + 1];
    uint64_t burst;  /* in thousandths of a request */
    uint64_t delay;  /* excess (thousandths) served without delay; UINT64_MAX: nodelay */
    const char *file; /* where limit_req was, for errors */
    unsigned line;
} demo_location_t;

typedef struct demo_conf_s demo_conf_t;

/* Fill in the demo's directives and configuration callbacks. */
void demo_app(shk_app_t *app);

/* The location for `path` as nginx chooses: an exact match; else the
 * longest prefix, unless a regular expression (in file order) matches
 * first and the prefix was not marked ^~. caps (may be NULL) gets a regex's
 * 10 capture pairs (offsets into path; -1: none). NULL if none matches. */
const demo_location_t *demo_location_match(const demo_conf_t *conf, const char *path,
                                           regoff_t caps[20]);
/* The same without the captures. */
const demo_location_t *demo_location_find(const demo_conf_t *conf, const char *path);

/* The push-stream settings: the store's and the location defaults given
 * outside locations. While a file is read, the settings of the directive's
 * place (its location, or the defaults outside one). */
const push_main_t *demo_push_main(const demo_conf_t *conf);
push_main_t *demo_push_main_of(shk_conf_t *cf);
push_loc_t *demo_push_loc_of(shk_conf_t *cf);

/* Decide for one request from client `key` (the binary address) at time
 * now_ms (milliseconds, any monotonic clock). *delay_ms receives the delay
 * for DEMO_LIMIT_DELAY. Takes the zone's lock. */
int demo_limit_at(const demo_location_t *loc, const void *key, size_t keylen, uint64_t now_ms,
                  unsigned *delay_ms);
/* The same at shk_time_ms(). Locations without a limit always pass. */
int demo_location_limit(const demo_location_t *loc, const void *key, size_t keylen,
                        unsigned *delay_ms);

/* Nodes currently in a limit zone's tree (for tests and /status). */
uint64_t demo_limit_nodes(const demo_location_t *loc);
/* Check the zone's tree (shk_rbtree_check, then every node's key and hash)
 * and that the LRU list holds exactly the tree's nodes. Takes the zone's
 * lock. SHK_OK, SHK_ECORRUPT with the reason, or the lock's error (the
 * zone not created yet: SHK_EINVAL; read-only: SHK_EPERM). The zone's data
 * (shk_zone_data) starts with the shk_rbtree_t of the nodes. */
int demo_limit_check(const demo_location_t *loc);

/* "$binary_remote_addr" of a textual address: 4 bytes for IPv4, 16 for
 * IPv6; 0 if it does not parse. */
size_t demo_binary_addr(const char *addr, unsigned char out[16]);

/* Per-worker set-up (nothing to do today; kept for symmetry). */
int demo_conf_worker_init(demo_conf_t *conf, shk_worker_t *w);

#endif
