#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
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
echo "## Conventions every call follows"
echo
cat <<'TEXT'
- **Status codes** come from one list, `SHK_ERRNO_MAP` in `core/shk_core.h`: `shk_strerror()` gives
  the text, `shk_err_name()` the name (`"SHK_EINVAL"`).
- **Zero and negative arguments** mean one thing everywhere. A timeout is in milliseconds: `0` means
  "do not wait: try once" (`shk_shmtx_timedlock(m, 0)`, `shk_bus_wait(bus, 0)`), and a negative
  timeout, where the type is signed, means "no limit" (`shk_bus_wait(bus, -1)`). A count or budget
  of `0` is `SHK_EINVAL` wherever zero items make no sense (`shk_bus_dispatch(bus, 0)`); defaults are
  named constants (`SHK_BUS_BUDGET`), never `0`. A size of `0` is served as 1 by the allocator, as
  `malloc(0)` may be. In an options structure (`shk_master_opts_t`), a field left `0` takes its
  documented default, so `{0}` is always a valid start.
- **Ownership**: a returned string is static or owned by its handle unless the comment says the
  caller frees it; handles are process-local and used by one thread at a time.
- **Locking**: each comment says which lock a call takes; `_locked` variants expect the caller to
  hold it; `shk_shmtx_held(status)` tells whether a lock call left the lock held.
- **ABI**: the shared library exports only `shk_` symbols, all under the version node `SHMKIT_0.1`
  (`mk/exports.map`); the soname is `libshmkit.so.0`.
TEXT
echo
for m in "$@"; do
    for h in "$m"/shk_*.h; do
        [ -e "$h" ] || continue
        case "$h" in *_internal.h) continue ;; esac
        echo "## \`$h\`"
        echo
        # the top comment, as prose
        grep -v '^/\* SPDX-License-Identifier' "$h" |
            awk 'NR==1 && !/^\/\*/ {exit} /^\/\*/ && NR==1 {next} /\*\// {exit} {sub(/^ \* ?/, ""); sub(/^ \*$/, ""); print}'
        echo
        echo '```c'
        # the header without its top comment and include guard
        grep -v '^/\* SPDX-License-Identifier' "$h" |
            awk 'BEGIN{top=1} top && /\*\// {top=0; next} top {next} {print}' |
            grep -v -E '^#(ifndef|define|endif)[[:space:]]+SHK_[A-Z_]+_H' |
            grep -v -E '^#endif /\* SHK_' |
            sed -e '/./,$!d' | cat -s
        echo '```'
        echo
    done
done
