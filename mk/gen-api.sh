#!/usr/bin/env bash
# mk/gen-api.sh MOD...: print docs/api.md, the API reference, from the public
# headers of the modules (bottom to top), so the reference is always what
# the headers say. Each header: its top comment as text, then the header
# itself (without include guards) as C.
set -eu
echo "# shmkit API reference"
echo
echo "Generated from the public headers by \`make docs\` (mk/gen-api.sh); \`make test\` fails when it"
echo "is stale. Include \`<shmkit/shmkit.h>\` for all of it. Conventions: functions that can fail return"
echo "\`SHK_OK\` (0) or a negative \`SHK_E...\` status, pointer returns are NULL on failure, and"
echo "\`shk_last_errmsg()\` explains the last failure of the calling thread."
echo
for m in "$@"; do
    for h in "$m"/shk_*.h; do
        [ -e "$h" ] || continue
        case "$h" in *_internal.h) continue ;; esac
        echo "## \`$h\`"
        echo
        # the top comment, as prose
        awk 'NR==1 && !/^\/\*/ {exit} /^\/\*/ && NR==1 {next} /\*\// {exit} {sub(/^ \* ?/, ""); sub(/^ \*$/, ""); print}' "$h"
        echo
        echo '```c'
        # the header without its top comment and include guard
        awk 'BEGIN{top=1} top && /\*\// {top=0; next} top {next} {print}' "$h" |
            grep -v -E '^#(ifndef|define|endif)[[:space:]]+SHK_[A-Z_]+_H' |
            grep -v -E '^#endif /\* SHK_' |
            sed -e '/./,$!d' | cat -s
        echo '```'
        echo
    done
done
