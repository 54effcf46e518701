#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# mk/check-install.sh: install into a scratch prefix, then compile and link
# the README's tour against it with nothing but `pkg-config --cflags --libs
# shmkit`, so the installed headers, the .pc file and the README agree.
set -eu
top=$(pwd)
tmp=$(mktemp -d /tmp/shmkit-install.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
make --no-print-directory -s VARIANT=rel install PREFIX="$tmp/prefix" DESTDIR= >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; echo "check-install: make install failed" >&2; exit 1; }
awk '/^```c$/ {on=1; next} /^```$/ && on {exit} on {print}' "$top/README.md" >"$tmp/tour.c"
[ -s "$tmp/tour.c" ] || { echo "check-install: no C tour found in README.md" >&2; exit 1; }
export PKG_CONFIG_PATH="$tmp/prefix/lib/pkgconfig"
flags=$(pkg-config --cflags --libs shmkit)
# shellcheck disable=SC2086
if ! ${CC:-cc} -std=c11 -Wall -Werror -o "$tmp/tour" "$tmp/tour.c" $flags 2>"$tmp/cc.log"; then
    cat "$tmp/cc.log" >&2
    echo "check-install: the README's tour does not build against the installed library" >&2
    exit 1
fi
echo "install: ok (the README's tour builds with pkg-config against a scratch prefix)"
