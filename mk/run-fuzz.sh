#!/usr/bin/env bash
# mk/run-fuzz.sh BUILD_DIR SECONDS BIN...: run each libFuzzer target for
# SECONDS on a scratch copy of its seed corpus (fuzz/corpus/<name>, plus
# fuzz/regress/<name>), so the tree is never written. Prints, per target,
# the runs, the coverage reached and what it found; a crash, leak or
# timeout leaves its input in BUILD_DIR/crashes/ (to be fixed and then kept
# in fuzz/regress/<name>/, which make test replays) and fails the run.
set -u
bdir=$1
secs=$2
shift 2
mkdir -p "$bdir/crashes"
work=$(mktemp -d /tmp/shmkit-fuzz.XXXXXX)
# a target that crashed leaves its named zone behind: remove ours
trap 'rm -rf "$work"; rm -f /dev/shm/shmkit.fz*' EXIT
failed=()
for bin in "$@"; do
    name=$(basename "$bin")
    name=${name#fuzz_}
    mkdir -p "$work/$name"
    cp fuzz/corpus/"$name"/* "$work/$name"/ 2>/dev/null
    cp fuzz/regress/"$name"/* "$work/$name"/ 2>/dev/null
    log=$work/$name.log
    echo "---- fuzz $name: ${secs}s"
    "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="$bdir/crashes/$name-" "$work/$name" >"$log" 2>&1
    rc=$?
    runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
    cov=$(grep -E '#[0-9]+.*cov:' "$log" | tail -n 1 | sed -E 's/.*cov: ([0-9]+).*/\1/')
    corpus=$(ls "$work/$name" | wc -l)
    if [ $rc -ne 0 ]; then
        grep -E 'ERROR|SUMMARY|fuzz check failed|Test unit written' "$log" | head -n 20
        failed+=("$name")
        echo "FUZZ $name runs=${runs:-?} cov=${cov:-?} corpus=$corpus found=1 (see $bdir/crashes/)"
    else
        echo "FUZZ $name runs=${runs:-?} cov=${cov:-?} corpus=$corpus found=0"
    fi
done
if [ ${#failed[@]} -ne 0 ]; then
    echo "fuzz: FAILED: ${failed[*]}"
    exit 1
fi
echo "fuzz: every target ran ${secs}s without a finding"
