#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# fuzz/gen_zone_corpus.sh: regenerate the zone fuzz target's seeds
# (fuzz/corpus/zone/*.zone, committed) from fuzz/gen_zone_corpus.c, built
# against the dbg library. Run from the top of the tree after a layout
# change of the zone, slab pool or bus.
set -eu
make --no-print-directory VARIANT=dbg lib >/dev/null
bin=build/dbg/fuzz/gen_zone_corpus
mkdir -p build/dbg/fuzz fuzz/corpus/zone
cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g \
    -Icore -Irbtree -Ishmtx -Islab -Ishm -Ibus -Ichan -Istat -Iproc -Iinclude \
    fuzz/gen_zone_corpus.c build/dbg/libshmkit.a -pthread -lrt -lm -o "$bin"
rm -f fuzz/corpus/zone/*.zone fuzz/corpus/zone/*.hdr
"$bin" fuzz/corpus/zone
