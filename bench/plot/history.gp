# SPDX-License-Identifier: BSD-2-Clause
# bench/plot/history.gp: every figure's ratio to its baseline across the
# kept runs, one panel per module, a line per figure. Called by
# bench/plot/plot.sh with dir (hist.<module> files and runs), out, mods,
# counts (figures per module) and nruns set.
nm = words(mods)
set terminal png size 1000, 60 + 260 * nm font ",8" noenhanced
set output out
set datafile separator "\t"
set multiplot layout nm, 1 title "shmkit benchmarks: ratio to the baseline, run after run"
set logscale y 10
set format y "%g"
set yrange [0.001:1000]
set xrange [-0.5:(nruns > 1 ? nruns - 0.5 : 0.5)]
set grid ytics
set key outside right top font ",7" spacing 0.8
set ylabel "value / baseline"
clip(r) = r < 0.001 ? 0.001 : r
do for [k = 1:nm] {
    m = word(mods, k)
    nf = int(word(counts, k))
    set title m
    set xtics ()
    set for [i = 0:nruns - 1] xtics add (system(sprintf("awk -F'\t' '$1 == %d {print $2}' %s/runs", i, dir)) i)
    plot for [i = 0:nf - 1] sprintf("%s/hist.%s", dir, m) index i using 1:(clip($2)) \
         with linespoints pt 7 ps 0.6 title columnheader(1)
}
unset multiplot
