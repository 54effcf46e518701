#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# mk/run-tests.sh BUILD_DIR MODE: run every Check suite in BUILD_DIR/test.
#   MODE native   run each suite as built (Check forks each test)
#   MODE both     native, then each suite again under valgrind memcheck with
#                 CK_FORK=no so valgrind follows the test itself, following
#                 the test's own forked workers and exec'd children
# Ends with the Check summary line of every run. Exit status 1 if any failed.
set -u
bdir=$1
mode=${2:-native}
tests=$(ls "$bdir"/test/test_* 2>/dev/null | sort)
[ -n "$tests" ] || { echo "run-tests: no test binaries in $bdir/test" >&2; exit 1; }
logdir=$(mktemp -d /tmp/shmkit-tests.XXXXXX)
failed=()
summary=()

run_one() { # label binary cmd...
    local label=$1 bin=$2; shift 2
    local name log t0 t1 rc line
    name=$(basename "$bin")
    log=$logdir/$name.$label.log
    echo "---- $name ($label)"
    t0=$(date +%s.%N)
    "$@" >"$log" 2>&1
    rc=$?
    t1=$(date +%s.%N)
    cat "$log"
    line=$(grep -E '^[0-9]+%: Checks: ' "$log" | tail -n 1)
    [ -n "$line" ] || line="(no Check summary)"
    summary+=("$(printf '%-14s %-9s %6.1fs  %s' "$name" "$label" "$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" "$line")")
    if [ $rc -ne 0 ]; then failed+=("$name ($label, exit $rc)"); fi
}

for t in $tests; do
    run_one native "$t" "$t"
done

if [ "$mode" = both ]; then
    vg=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,possible
        --trace-children=yes --trace-children-skip='/bin/*,/usr/bin/*,/usr/sbin/*'
        --child-silent-after-fork=no --show-leak-kinds=definite,possible)
    for t in $tests; do
        CK_FORK=no SHK_UNDER_VALGRIND=1 run_one valgrind "$t" "${vg[@]}" "$t"
    done
fi

echo
echo "==== summary ($bdir, $mode)"
for s in "${summary[@]}"; do echo "$s"; done
rm -rf "$logdir"
if [ ${#failed[@]} -ne 0 ]; then
    echo "FAILED: ${failed[*]}"
    exit 1
fi
exit 0
