#!/usr/bin/env bash
# mk/check-exports.sh LIB: the shared library exports only shk_ symbols.
set -u
lib=$1
others=$(nm -D --defined-only "$lib" | awk '$2 ~ /[TDBRVWi]/ {print $3}' | grep -v '^shk_' | grep -v '^LIBSHMKIT' || true)
if [ -n "$others" ]; then
    echo "exports: $lib exports symbols without the shk_ prefix:" >&2
    echo "$others" >&2
    exit 1
fi
n=$(nm -D --defined-only "$lib" | grep -c ' shk_')
echo "exports: ok ($n shk_ symbols, soname $(objdump -p "$lib" | awk '/SONAME/ {print $2}'))"
