/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * fuzz.h: how a fuzz target is declared. Each fuzz/fuzz_<name>.c defines
 * SHK_FUZZ_TARGET(name) { ... }: built by `make fuzz` (clang, libFuzzer,
 * ASan, UBSan) it is the libFuzzer entry point; built for `make test`
 * (-DSHK_FUZZ_REPLAY) it is shk_fuzz_<name>(), which test/test_fuzz.c
 * calls on every file of fuzz/corpus/<name>/ and fuzz/regress/<name>/ (the
 * inputs of crashes found and fixed), natively and under valgrind.
 *
 * A target returns 0 and must not crash, hang or leak on any input; it
 * aborts (FUZZ_CHECK) when a property it checks fails.
 */
#ifndef SHK_FUZZ_H
#define SHK_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#ifdef SHK_FUZZ_REPLAY
#define SHK_FUZZ_TARGET(name)                                                                      \
    int shk_fuzz_##name(const uint8_t *data, size_t size);                                         \
    int shk_fuzz_##name(const uint8_t *data, size_t size)
#else
#define SHK_FUZZ_TARGET(name)                                                                      \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);                                  \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
#endif

/* A property the target checks: print and abort, so the fuzzer keeps the
 * input and the replay test fails. */
#define FUZZ_CHECK(cond, ...)                                                                      \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: fuzz check failed: %s: ", __FILE__, __LINE__, #cond);          \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

#endif
