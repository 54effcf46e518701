#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# mk/check-exports.sh LIB: the shared library exports only shk_ symbols, each
# under the SHMKIT_ version node of mk/exports.map.
set -u
lib=$1
others=$(nm -D --defined-only "$lib" | awk '$2 ~ /[TDBRVWi]/ {print $3}' | grep -v '^shk_' | grep -v "^SHMKIT_" || true)
if [ -n "$others" ]; then
    echo "exports: $lib exports symbols without the shk_ prefix:" >&2
    echo "$others" >&2
    exit 1
fi
# every exported symbol carries the version node
unversioned=$(objdump -T "$lib" | awk '$NF ~ /^shk_/ && $(NF-1) !~ /^SHMKIT_/ {print $NF}')
if [ -n "$unversioned" ]; then
    echo "exports: symbols without the SHMKIT_ version node:" >&2
    echo "$unversioned" >&2
    exit 1
fi
n=$(nm -D --defined-only "$lib" | grep -c ' shk_')
node=$(objdump -T "$lib" | awk '$NF ~ /^shk_/ {print $(NF-1); exit}')
echo "exports: ok ($n shk_ symbols in $node, soname $(objdump -p "$lib" | awk '/SONAME/ {print $2}'))"
