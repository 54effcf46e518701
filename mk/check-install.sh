#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# mk/check-install.sh: install into a scratch prefix, then compile and link
# the README's tour against it with nothing but `pkg-config --cflags --libs
# shmkit`, so the installed headers, the .pc file and the README agree.
#   mk/check-install.sh              make install into a scratch prefix (make check-install)
#   mk/check-install.sh --installed DIR
#                                    no install: the shmkit.pc pkg-config finds as it
#                                    is (the Debian packages, mk/check-deb.sh); the
#                                    tour (DIR/tour.c, DIR/tour) is left in DIR
set -eu
top=$(pwd)
tmp=$(mktemp -d /tmp/shmkit-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
case "${1:-}" in
"")
    out=$tmp what="a scratch prefix"
    make --no-print-directory -s VARIANT=rel install PREFIX="$tmp/prefix" DESTDIR= >"$tmp/install.log" 2>&1 ||
        { cat "$tmp/install.log" >&2; echo "check-install: make install failed" >&2; exit 1; }
    export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
    ;;
--installed)
    out=${2:?usage: $0 [--installed DIR]}
    mkdir -p "$out"
    pkg-config --exists shmkit || { echo "check-install: pkg-config finds no shmkit.pc" >&2; exit 1; }
    what="$(pkg-config --variable=pcfiledir shmkit)/shmkit.pc"
    ;;
*) echo "usage: $0 [--installed DIR]" >&2; exit 2 ;;
esac
awk '/^```c$/ {on=1; next} /^```$/ && on {exit} on {print}' "$top/README.md" >"$out/tour.c"
[ -s "$out/tour.c" ] || { echo "check-install: no C tour found in README.md" >&2; exit 1; }
flags=$(pkg-config --cflags --libs shmkit)
# shellcheck disable=SC2086
if ! ${CC:-cc} -std=c11 -Wall -Werror -o "$out/tour" "$out/tour.c" $flags 2>"$tmp/cc.log"; then
    cat "$tmp/cc.log" >&2
    echo "check-install: the README's tour does not build against the installed library" >&2
    exit 1
fi
echo "install: ok (the README's tour builds with pkg-config against $what)"
