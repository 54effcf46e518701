#!/usr/bin/env bash
# mk/check-layers.sh MOD...: modules are given bottom to top. Fails if a
# module's file includes a shmkit header that belongs to a module above it.
set -u
mods=("$@")
declare -A level owner
for i in "${!mods[@]}"; do
    level[${mods[$i]}]=$i
    for h in "${mods[$i]}"/*.h; do
        [ -e "$h" ] && owner[$(basename "$h")]=${mods[$i]}
    done
done
bad=0
for m in "${mods[@]}"; do
    for f in "$m"/*.[ch]; do
        [ -e "$f" ] || continue
        while IFS= read -r inc; do
            o=${owner[$inc]:-}
            [ -n "$o" ] || continue
            if [ "${level[$o]}" -gt "${level[$m]}" ]; then
                echo "layering: $f includes $inc from module $o, which is above $m" >&2
                bad=1
            fi
        done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
    done
done
[ $bad = 0 ] && echo "layering: ok (${mods[*]})"
exit $bad
