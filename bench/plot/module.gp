# SPDX-License-Identifier: BSD-2-Clause
# bench/plot/module.gp: one module's figures of one run, as bars of their
# ratio to the baseline (log scale, 1 marked), value and baseline beside
# each bar. Called by bench/plot/plot.sh with data, out, n, mod and run set.
set terminal png size 1000, (110 + 26 * n) font ",9" noenhanced
set output out
set datafile separator "\t"
set title sprintf("%s: ratio to the baseline of the same run (%s)", mod, run)
set logscale x 10
set xrange [0.001:30000]
set format x "%g"
set xlabel "value / baseline (log scale; for times below 1 is faster, for rates above 1 is more)"
set yrange [n - 0.3:-0.7]
set ytics nomirror
set grid xtics
set key off
set style fill solid 0.6 noborder
set arrow from 1, graph 0 to 1, graph 1 nohead lc rgb "#444444" dt 2
clip(r) = r < 0.001 ? 0.001 : r
plot data using (sqrt(clip($2) * 0.001)):0:(0.001):(clip($2)):($0 - 0.35):($0 + 0.35):ytic(1) \
         with boxxyerror lc rgb "#3366aa", \
     data using (clip($2)):0:(sprintf(" %.4g  (%s)", $2, strcol(3))) with labels left font ",8"
