#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/plot/plot.sh RESULTS_DIR OUT_DIR: the charts of the runs `make bench`
# kept in RESULTS_DIR/*.txt (make bench-plot). For the latest run, one PNG
# per module, OUT_DIR/<module>.png: each figure's ratio to its baseline
# measured in the same run (value / baseline), on a log scale with the
# line at 1, and the value and baseline written beside the bar. Across
# every run, OUT_DIR/history.png: one panel per module, a line per figure,
# its ratio run after run (in the order of the times the runs record). A
# figure is named by the part of its name after the module's.
set -eu
res=${1:-bench/results}
out=${2:-$res/png}
here=$(cd "$(dirname "$0")" && pwd)
command -v gnuplot >/dev/null 2>&1 || { echo "bench-plot: gnuplot is missing (mk/deps.sh plot)" >&2; exit 1; }
# Runs in the order they were made: by the time in their first line
# ("# shmkit make bench, YYYY-MM-DD HH:MM:SS"), then by name. Other files
# (make bench-chan's runs, "# shmkit make bench-chan, ...") are not charted.
mapfile -t runs < <(for f in "$res"/*.txt; do
    [ -e "$f" ] || continue
    t=$(sed -n '1s/^# shmkit make bench, \([0-9-]* [0-9:]*\).*/\1/p' "$f")
    [ -n "$t" ] || continue
    printf '%s\t%s\n' "$t" "$f"
done | sort | cut -f2)
[ ${#runs[@]} -gt 0 ] || { echo "bench-plot: no runs in $res (make bench keeps one)" >&2; exit 1; }
mkdir -p "$out"
tmp=$(mktemp -d /tmp/shmkit-plot.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
latest=${runs[${#runs[@]}-1]}
label() { basename "$1" .txt; }

# Latest run: $tmp/latest.<module>, one figure a line:
#   name<TAB>ratio<TAB>"value unit / baseline bvalue"
awk -v dir="$tmp" '
$1 == "BENCH" && NF >= 7 && $5 ~ /^baseline=/ && $7 ~ /^ratio=/ {
    split($2, n, "."); mod = n[1]; fig = substr($2, length(mod) + 2)
    r = substr($7, 7); b = substr($5, 10)
    printf "%s\t%s\t%s %s / %s %s\n", fig, r, $3, $4, b, $6 > (dir "/latest." mod)
}' "$latest"

for f in "$tmp"/latest.*; do
    mod=${f##*.}
    n=$(wc -l <"$f")
    gnuplot -e "data='$f'; out='$out/$mod.png'; n=$n; mod='$mod'; run='$(label "$latest")'" \
        "$here/module.gp"
    echo "bench-plot: $out/$mod.png ($n figures, run $(label "$latest"))"
done

# History: $tmp/hist.<module>, a block per figure (blank lines between):
#   "# figure" then run-index<TAB>ratio lines; $tmp/runs: index<TAB>label.
i=0
: >"$tmp/runs"
for r in "${runs[@]}"; do
    printf '%d\t%s\n' "$i" "$(label "$r")" >>"$tmp/runs"
    awk -v i="$i" '$1 == "BENCH" && $7 ~ /^ratio=/ { print $2 "\t" i "\t" substr($7, 7) }' "$r"
    i=$((i + 1))
done | sort -t "$(printf '\t')" -k1,1 -s | awk -v dir="$tmp" '
{
    split($1, n, "."); mod = n[1]; fig = substr($1, length(mod) + 2)
    f = dir "/hist." mod
    if (fig != last[mod]) {
        if (last[mod] != "") print "\n" > f
        print fig > f
        nfig[mod]++
        last[mod] = fig
    }
    print $2 "\t" $3 > f
}
END { for (m in nfig) print m, nfig[m] > (dir "/mods") }'
sort "$tmp/mods" >"$tmp/mods.sorted"
mods=$(awk '{printf "%s ", $1}' "$tmp/mods.sorted")
counts=$(awk '{printf "%s ", $2}' "$tmp/mods.sorted")
gnuplot -e "dir='$tmp'; out='$out/history.png'; mods='$mods'; counts='$counts'; nruns=${#runs[@]}" \
    "$here/history.gp"
echo "bench-plot: $out/history.png (${#runs[@]} runs)"
