#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# mk/splice.sh FILE NAME: print FILE with what is between its lines
# "<!-- NAME:begin -->" and "<!-- NAME:end -->" replaced by standard input.
set -eu
file=$1
name=$2
new=$(mktemp)
trap 'rm -f "$new"' EXIT
cat >"$new"
grep -q "^<!-- $name:begin -->\$" "$file" && grep -q "^<!-- $name:end -->\$" "$file" ||
    { echo "splice: $file has no $name:begin/$name:end markers" >&2; exit 1; }
awk -v b="<!-- $name:begin -->" -v e="<!-- $name:end -->" -v f="$new" '
    $0 == b { print; while ((getline l < f) > 0) print l; skip = 1; next }
    $0 == e { skip = 0 }
    !skip { print }
' "$file"
