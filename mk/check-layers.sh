#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# mk/check-layers.sh MOD...: the library's modules are given bottom to top.
# Fails if
#   - a module's file includes a header of a module above it, or one of
#     demo/, test/ or bench/;
#   - tools/, bench/ or fuzz/ include a demo header (they may use every
#     library header, internal ones included for bench/ and fuzz/);
#   - demo/ includes anything but library headers and its own;
#   - a test or a benchmark includes a demo header, except those of the
#     demo (test/test_demo*.c, bench/bench_demo*.c);
#   - anyone includes another folder's test/, bench/ or fuzz/ helpers.
# Headers are known by where they live: <module>/*.h, include/*.h, and
# demo/, test/, bench/, fuzz/*.h.
set -u
mods=("$@")
declare -A level owner
for i in "${!mods[@]}"; do
    level[${mods[$i]}]=$i
    for h in "${mods[$i]}"/*.h; do
        [ -e "$h" ] && owner[$(basename "$h")]=${mods[$i]}
    done
done
for h in include/*.h; do
    [ -e "$h" ] && owner[$(basename "$h")]=include
done
for d in demo test bench fuzz; do
    for h in "$d"/*.h; do
        [ -e "$h" ] && owner[$(basename "$h")]=$d
    done
done

bad=0
complain() {
    echo "layering: $*" >&2
    bad=1
}

# includes FILE: the "quoted" includes of FILE, one a line
includes() {
    sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$1"
}

for m in "${mods[@]}"; do
    for f in "$m"/*.[ch]; do
        [ -e "$f" ] || continue
        while IFS= read -r inc; do
            o=${owner[$inc]:-}
            case "$o" in
            '' | include) ;;
            demo | test | bench | fuzz) complain "$f includes $inc from $o/, which the library must not use" ;;
            *)
                if [ "${level[$o]}" -gt "${level[$m]}" ]; then
                    complain "$f includes $inc from module $o, which is above $m"
                fi
                ;;
            esac
        done < <(includes "$f")
    done
done

for dir in tools bench demo test fuzz examples; do
    for f in "$dir"/*.[ch]; do
        [ -e "$f" ] || continue
        while IFS= read -r inc; do
            o=${owner[$inc]:-}
            case "$o" in
            demo)
                case "$dir/$(basename "$f")" in
                demo/* | test/test_demo*.c | bench/bench_demo*.c) ;;
                *) complain "$f includes $inc from demo/: only the demo, its tests and its benchmarks may" ;;
                esac
                ;;
            test | bench | fuzz)
                [ "$o" = "$dir" ] || complain "$f includes $inc, a helper of $o/"
                ;;
            esac
        done < <(includes "$f")
    done
done

[ $bad = 0 ] && echo "layering: ok (${mods[*]}; tools, bench, demo, test, fuzz, examples)"
exit $bad
