/*
 * shmkit.h: the whole public API of shmkit in one include.
 *
 * Modules, bottom to top (each uses only those before it):
 *   core   status codes, errors, logging, cached pid, clocks, config reader
 *   shmtx  process-shared mutex with dead-owner recovery
 */
#ifndef SHMKIT_H
#define SHMKIT_H

#include "shk_core.h"
#include "shk_shmtx.h"

#endif /* SHMKIT_H */
