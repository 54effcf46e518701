/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * shmkit.h: the whole public API of shmkit in one include.
 *
 * Modules, bottom to top (each uses only those before it):
 *   core   status codes, errors, logging, cached pid, clocks, config reader
 *   rbtree red-black tree linked by offsets, for shared memory
 *   shmtx  process-shared mutex with dead-owner recovery
 *   slab   slab allocator inside a zone
 *   shm    named, tagged zones; reload reuse; attach
 *   bus    per-worker alert queues with a pipe doorbell
 *   chan   publish/subscribe channels stored in a zone, delivered over the bus
 *   redis  channels across hosts on Redis: the relay and its publishers
 *   stat   reports on zones and the zones list (text, JSON)
 *   proc   master/worker supervisor
 */
#ifndef SHMKIT_H
#define SHMKIT_H

#include "shk_core.h"
#include "shk_rbtree.h"
#include "shk_shmtx.h"
#include "shk_conf.h"
#include "shk_slab.h"
#include "shk_zone.h"
#include "shk_bus.h"
#include "shk_chan.h"
#include "shk_redis.h"
#include "shk_stat.h"
#include "shk_proc.h"

#endif /* SHMKIT_H */
