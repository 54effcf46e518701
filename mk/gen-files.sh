#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# mk/gen-files.sh DIR...: the "which file holds what" tables of
# docs/architecture.md, one per folder, from each file's opening comment:
# its first sentence after "name:" (up to the first period followed by a
# space or the end of the comment). `make docs` puts them between the
# page's files:begin and files:end markers; `make test` fails when they are
# stale, so a new file, or a file whose job changed, shows here.
set -eu
first_sentence() { # FILE
    case "$1" in
    *.sh)
        # the leading "#" lines after the #! and SPDX lines
        awk '
            NR == 1 && /^#!/ { next }
            /SPDX-License-Identifier/ { next }
            /^#/ { sub(/^# ?/, ""); printf "%s ", $0; next }
            { exit }
        ' "$1" ;;
    *.html)
        awk '
            !started && /<!--/ { started = 1; sub(/.*<!-- ?/, "") }
            started && /-->/ { sub(/ ?-->.*/, ""); printf "%s ", $0; exit }
            started { printf "%s ", $0 }
        ' "$1" ;;
    *)
        awk '
            NR == 1 && /SPDX-License-Identifier/ { next }
            !started && /^\/\*/ { started = 1; next }
            started && /\*\// { exit }
            started { sub(/^ \* ?/, ""); sub(/^ \*$/, ""); printf "%s ", $0 }
        ' "$1" ;;
    esac | sed -E 's/^[^:]*: //; s/\s+/ /g; s/^(([^.]|\.[^ ])*\.)( .*)?$/\1/; s/ $//'
}
for d in "$@"; do
    [ -d "$d" ] || continue
    files=$(ls "$d" | grep -E '\.(c|h|sh|js|html)$' | sort || true)
    [ -n "$files" ] || continue
    echo "### \`$d/\`"
    echo
    echo "| file | holds |"
    echo "| --- | --- |"
    for f in $files; do
        desc=$(first_sentence "$d/$f")
        [ -n "$desc" ] || desc="(no opening comment)"
        printf '| `%s` | %s |\n' "$f" "${desc//|/\\|}"
    done
    echo
done
