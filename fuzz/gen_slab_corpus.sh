#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# fuzz/gen_slab_corpus.sh: regenerate the slab fuzz target's seeds
# (fuzz/corpus/slab/*.slab, committed) from fuzz/gen_slab_corpus.c, built
# against the dbg library. Run from the top of the tree after a layout
# change of the slab pool.
set -eu
make --no-print-directory VARIANT=dbg lib >/dev/null
bin=build/dbg/fuzz/gen_slab_corpus
mkdir -p build/dbg/fuzz fuzz/corpus/slab
cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g \
    -Icore -Irbtree -Ishmtx -Islab -Ishm -Ibus -Ichan -Istat -Iproc -Iinclude \
    fuzz/gen_slab_corpus.c build/dbg/libshmkit.a -pthread -lrt -lm -o "$bin"
rm -f fuzz/corpus/slab/*.slab
"$bin" fuzz/corpus/slab
