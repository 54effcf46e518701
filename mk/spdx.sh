#!/usr/bin/env bash
# mk/spdx.sh [--add]: every source file of the project carries the license's
# SPDX line (LICENSE: BSD-2-Clause) at its top: C files and headers as a
# first-line comment, scripts right after their #! line. Without --add it
# lists the files that lack it and fails; with --add it puts it in.
set -u
line_c='/* SPDX-License-Identifier: BSD-2-Clause */'
line_sh='# SPDX-License-Identifier: BSD-2-Clause'
line_js='// SPDX-License-Identifier: BSD-2-Clause'
add=0
[ "${1:-}" = --add ] && add=1
missing=()
while IFS= read -r f; do
    grep -q 'SPDX-License-Identifier: BSD-2-Clause' "$f" && continue
    if [ $add = 0 ]; then
        missing+=("$f")
        continue
    fi
    case "$f" in
    *.c | *.h) { echo "$line_c"; cat "$f"; } >"$f.spdx" ;;
    *.js) { echo "$line_js"; cat "$f"; } >"$f.spdx" ;;
    *)
        if head -n 1 "$f" | grep -q '^#!'; then
            { head -n 1 "$f"; echo "$line_sh"; tail -n +2 "$f"; } >"$f.spdx"
        else
            { echo "$line_sh"; cat "$f"; } >"$f.spdx"
        fi
        ;;
    esac
    chmod --reference="$f" "$f.spdx" && mv "$f.spdx" "$f"
done < <(git ls-files -co --exclude-standard -- '*.c' '*.h' '*.sh' '*.js' '.ci/run' 'Makefile' \
             ':!:test/node/node_modules/*' | sort -u)
if [ ${#missing[@]} -ne 0 ]; then
    echo "spdx: these files lack the SPDX-License-Identifier line (mk/spdx.sh --add):" >&2
    printf '  %s\n' "${missing[@]}" >&2
    exit 1
fi
[ $add = 1 ] || echo "spdx: every source file carries SPDX-License-Identifier: BSD-2-Clause"
