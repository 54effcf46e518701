#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/chan/run.sh: the pub/sub benchmark (make bench-chan, bench/README.md).
# Starts the demo server (bench/chan/demo.sh) and the nchan baseline
# (bench/nchan/nchan.sh), both with 4 workers and 100 messages kept per
# channel, and drives them with the same load client
# (build/rel/pubsub-client) the same way:
#   1. zone bytes per stored message: each server's store measured (bytes of
#      slab pages given out, messages stored), 100 messages published on
#      each of 100 fresh channels (64 B) or 10 (16 KiB) with 150 each, so
#      100 stay stored per channel, measured again: bytes / stored, deltas;
#   2. every case: 64 B and 16 KiB messages, 1 and 100 channels, 100 and
#      1,000 subscribers, the four modes (eventsource, longpoll, stream,
#      websocket), publishers at full speed (min(channels, 4) connections,
#      8 requests in flight each); REPS rounds (default 3), the servers
#      alternating in each round (demo first in odd rounds, nchan first in
#      even ones), cases in the same order every round.
# Then prints the table of medians (markdown), the targets met or missed,
# and the BENCH lines. The RESULT lines go to LOG.
#   bench/chan/run.sh [--reps N] [--log FILE] [--results DIR] [--quick]
#       --results DIR: a complete run (not --quick) is kept in
#       DIR/<date>-chan.txt (-2, -3 ... for another the same day): '#' lines
#       with the date, commit, kernel and CPUs, the BENCH lines, then the
#       log (the RESULT lines), as make bench keeps its runs
#       --quick: one round, fewer messages (a smoke run)
#   bench/chan/run.sh --report LOG    the table and BENCH lines of a log
# Environment: BENCH_CHAN_REPS, BENCH_CHAN_LOG (default
# /tmp/shmkit-bench-chan.log). About 6 minutes with 3 rounds, 1 with --quick.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
client=${CLIENT:-$root/build/rel/pubsub-client}
reps=${BENCH_CHAN_REPS:-3}
log=${BENCH_CHAN_LOG:-/tmp/shmkit-bench-chan.log}
quick=0
report_only=
results=

while [ $# -gt 0 ]; do
    case $1 in
    --reps) reps=$2; shift 2 ;;
    --log) log=$2; shift 2 ;;
    --quick) quick=1; reps=1; shift ;;
    --report) report_only=$2; shift 2 ;;
    --results) results=$2; shift 2 ;;
    *) echo "usage: run.sh [--reps N] [--log FILE] [--results DIR] [--quick] | --report LOG" >&2; exit 2 ;;
    esac
done

# ---- the report ---------------------------------------------------------------------

# report LOG: the table of medians, the targets, the BENCH lines. A log line
# is SERVER<TAB>CASE<TAB>ROUND<TAB>RESULT ... (a run) or
# zone<TAB>SERVER<TAB>SIZE<TAB>ZONE0 ...<TAB>ZONE1 ... (the zone figures).
report() {
    awk -F'\t' -v ncpu="$(nproc)" '
    function med(key,    n, i, j, t, a) {
        n = cnt[key]
        if (n == 0) return -1
        for (i = 1; i <= n; i++) a[i] = val[key, i]
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function put(key, v) { val[key, ++cnt[key]] = v + 0 } # numbers: substr() gives strings
    function ratio(a, b) { return b > 0 ? a / b : (a == 0 ? 1 : 1e9) }
    function kv(s, f,    n, i, p, x) {
        n = split(s, x, " ")
        for (i = 2; i <= n; i++) { p = index(x[i], "="); f[substr(x[i], 1, p - 1)] = substr(x[i], p + 1) }
    }
    function bench(name, v, unit, bname, bv) {
        printf "BENCH %s %.6g %s baseline=%s %.6g ratio=%.4f\n", name, v, unit, bname, bv, ratio(v, bv)
    }
    $1 == "zone" {
        split($4, a, /[ =]/); split($5, b, /[ =]/)   # ZONE bytes B stored N
        db = b[3] - a[3]; ds = b[5] - a[5]
        zone[$2, $3] = ds > 0 ? db / ds : -1
        next
    }
    NF >= 4 {
        delete f
        kv($4, f)
        srv = $1; c = $2
        if (!(c in seen)) { seen[c] = 1; order[++ncases] = c }
        put(srv SUBSEP c SUBSEP "dps", f["deliveries_per_s"])
        put(srv SUBSEP c SUBSEP "pps", f["publishes_per_s"])
        put(srv SUBSEP c SUBSEP "cpu", f["deliveries_per_server_cpu_s"])
        put(srv SUBSEP c SUBSEP "p50", f["p50_us"])
        put(srv SUBSEP c SUBSEP "p99", f["p99_us"])
        put(srv SUBSEP c SUBSEP "share", f["elapsed_s"] > 0 ? f["server_cpu_s"] / (f["elapsed_s"] * ncpu) : 0)
        lost[srv, c] += f["lost"]; dup[srv, c] += f["duplicated"]; exp_[srv, c] += f["expected"]
        reord[srv, c] += f["reordered"]; errs[srv, c] += f["errors"]; runs[srv, c]++
        tlost[srv] += f["lost"] + f["duplicated"]; texp[srv] += f["expected"]
        terr[srv] += f["errors"]; treord[srv] += f["reordered"]; truns[srv]++
    }
    END {
        print "| case | deliveries/s demo / nchan (ratio) | per server CPU-s demo / nchan (ratio) | p50 ms demo / nchan | p99 ms demo / nchan (ratio) | publishes/s demo / nchan | server CPU share demo / nchan | lost+dup demo / nchan (of expected) |"
        print "| --- | --- | --- | --- | --- | --- | --- | --- |"
        for (i = 1; i <= ncases; i++) {
            c = order[i]; d = "demo" SUBSEP c SUBSEP; n = "nchan" SUBSEP c SUBSEP
            split(c, cc, "/")
            label = sprintf("%s, %s ch, %s subs, %s B", cc[1], cc[2], cc[3], cc[4])
            printf "| %s | %.0f / %.0f (%.2f) | %.0f / %.0f (%.2f) | %.2f / %.2f | %.2f / %.2f (%.2f) | %.0f / %.0f | %.0f%% / %.0f%% | %d / %d (%d) |\n",
                label, med(d "dps"), med(n "dps"), ratio(med(d "dps"), med(n "dps")),
                med(d "cpu"), med(n "cpu"), ratio(med(d "cpu"), med(n "cpu")),
                med(d "p50") / 1000, med(n "p50") / 1000,
                med(d "p99") / 1000, med(n "p99") / 1000, ratio(med(d "p99"), med(n "p99")),
                med(d "pps"), med(n "pps"), 100 * med(d "share"), 100 * med(n "share"),
                lost["demo", c] + dup["demo", c], lost["nchan", c] + dup["nchan", c], exp_["demo", c]
        }
        printf "\nzone bytes per stored message: 64 B demo %.1f, nchan %.1f (%.3f); 16 KiB demo %.1f, nchan %.1f (%.3f)\n",
            zone["demo", 64], zone["nchan", 64], ratio(zone["demo", 64], zone["nchan", 64]),
            zone["demo", 16384], zone["nchan", 16384], ratio(zone["demo", 16384], zone["nchan", 16384])
        printf "runs: demo %d, nchan %d; errors demo %d, nchan %d; reordered demo %d, nchan %d\n",
            truns["demo"], truns["nchan"], terr["demo"], terr["nchan"], treord["demo"], treord["nchan"]
        es = "eventsource/1/1000/64"; es100 = "eventsource/100/1000/64"
        d = "demo" SUBSEP es SUBSEP; n = "nchan" SUBSEP es SUBSEP
        d2 = "demo" SUBSEP es100 SUBSEP; n2 = "nchan" SUBSEP es100 SUBSEP
        printf "\ntargets:\n"
        r = ratio(med(d "cpu"), med(n "cpu"))
        printf "  1 ch, 1000 EventSource subs: deliveries per server CPU-s >= 2x nchan: %s (%.2fx)\n", (r >= 2 ? "met" : "MISSED"), r
        r = ratio(med(d "dps"), med(n "dps"))
        printf "  1 ch, 1000 EventSource subs: deliveries/s >= 1.2x nchan: %s (%.2fx)\n", (r >= 1.2 ? "met" : "MISSED"), r
        r = ratio(med(d "p99"), med(n "p99"))
        printf "  1 ch, 1000 EventSource subs: p99 <= 0.5x nchan: %s (%.2fx)\n", (r <= 0.5 ? "met" : "MISSED"), r
        r = ratio(med(d2 "dps"), med(n2 "dps"))
        printf "  100 ch, 1000 EventSource subs: deliveries/s >= 2x nchan: %s (%.2fx)\n", (r >= 2 ? "met" : "MISSED"), r
        r = ratio(zone["demo", 64], zone["nchan", 64])
        printf "  zone bytes per stored 64 B message <= 0.5x nchan: %s (%.3fx)\n", (r <= 0.5 ? "met" : "MISSED"), r
        printf "  0 lost or duplicated in every case: %s (demo %d of %d expected, nchan %d of %d)\n\n",
            tlost["demo"] == 0 && terr["demo"] == 0 ? "met" : "MISSED", tlost["demo"], texp["demo"], tlost["nchan"], texp["nchan"]
        bench("chan.es1000_deliveries", med(d "dps"), "deliveries/s", "nchan", med(n "dps"))
        bench("chan.es1000_per_cpu", med(d "cpu"), "deliveries/server_cpu_s", "nchan", med(n "cpu"))
        bench("chan.es1000_p99", med(d "p99"), "us", "nchan", med(n "p99"))
        bench("chan.es100x1000_deliveries", med(d2 "dps"), "deliveries/s", "nchan", med(n2 "dps"))
        bench("chan.es100x1000_per_cpu", med(d2 "cpu"), "deliveries/server_cpu_s", "nchan", med(n2 "cpu"))
        bench("chan.lost", tlost["demo"], "messages", "nchan", tlost["nchan"])
        bench("chan.zone_bytes_per_msg", zone["demo", 64], "bytes", "nchan", zone["nchan", 64])
        bench("chan.zone_bytes_per_msg_16k", zone["demo", 16384], "bytes", "nchan", zone["nchan", 16384])
    }' "$1"
}

if [ -n "$report_only" ]; then
    report "$report_only"
    exit 0
fi

# ---- the runs -----------------------------------------------------------------------

[ -x "$client" ] || { echo "bench-chan: no client at $client (make pubsub-client)" >&2; exit 1; }
case $reps in '' | *[!0-9]* | 0) echo "bench-chan: --reps wants a count" >&2; exit 2 ;; esac
t0=$(date +%s)

# Both stores get 512 MiB: every case of one size uses the same 100 channel
# names, so each store holds at most 100 x 100 messages of each size (plus the
# zone measure's), about 200 MB of 16 KiB messages in nchan's.
out=$("$here/demo.sh" start -m 512m) || exit 1
eval "${out#DEMO }"
demo_port=$port demo_prefix=$prefix
out=$("$root/bench/nchan/nchan.sh" start -m 512m) || { "$here/demo.sh" stop "$demo_prefix"; exit 1; }
eval "${out#NCHAN }"
nchan_port=$port nchan_prefix=$prefix
trap '"$here/demo.sh" stop "$demo_prefix"; "$root/bench/nchan/nchan.sh" stop "$nchan_prefix"' EXIT
demo_pids=$("$here/demo.sh" pids "$demo_prefix")
nchan_pids=$("$root/bench/nchan/nchan.sh" pids "$nchan_prefix")
echo "bench-chan: demo on 127.0.0.1:$demo_port (pids $demo_pids), nchan on 127.0.0.1:$nchan_port (pids $nchan_pids), $reps rounds" >&2
: >"$log"

# client SERVER ARGS...: one run of the client against SERVER
client() {
    local srv=$1
    shift
    if [ "$srv" = demo ]; then
        timeout 120 "$client" -q -p "$demo_port" --server-pids "$demo_pids" --drain-ms 1000 "$@"
    else
        timeout 120 "$client" -q -p "$nchan_port" --server-pids "$nchan_pids" --drain-ms 1000 "$@"
    fi
}

# The demo's locations per mode (bench/chan/demo.conf.in); nchan serves every
# mode at /sub/ (bench/nchan/nginx.conf.in) in its own framing.
mode_args() { # SERVER MODE
    if [ "$1" = nchan ]; then
        echo "--sub-url http://127.0.0.1:%PORT%/sub/%CH%"
        return
    fi
    case $2 in
    eventsource) echo "--sub-url http://127.0.0.1:%PORT%/ev/%CH%" ;;
    longpoll) echo "--sub-url http://127.0.0.1:%PORT%/lp/%CH% -t ~text~\\n" ;;
    stream) echo "--sub-url http://127.0.0.1:%PORT%/sub/%CH% -t ~text~\\n" ;;
    websocket) echo "--sub-url http://127.0.0.1:%PORT%/ws/%CH%" ;;
    esac
}

# 1. zone bytes per stored message, on the fresh stores
zone_of() { # SERVER
    if [ "$1" = demo ]; then "$here/demo.sh" zone "$demo_prefix"; else "$root/bench/nchan/nchan.sh" zone "$nchan_prefix"; fi
}
for size in 64 16384; do
    nch=100
    [ $size = 16384 ] && nch=10
    for srv in demo nchan; do
        z0=$(zone_of $srv) || exit 1
        client $srv -c $nch -s 0 -P 4 --pipeline 8 -n 150 -b $size --ch-prefix "zone${size}_" >/dev/null
        z1=$(zone_of $srv) || exit 1
        printf 'zone\t%s\t%s\t%s\t%s\n' $srv $size "$z0" "$z1" >>"$log"
    done
done

# 2. every case, REPS rounds. About D deliveries and at most P publishes a
# run: n = min(D / subscribers, P / channels) messages per channel (64 B:
# 8,000, 800, 400, 400 for 1 x 100, 1 x 1,000, 100 x 100, 100 x 1,000
# channels x subscribers; 16 KiB: 800, 80, 40, 40). At full speed the
# latency is mostly the backlog a publisher faster than the fan-out builds,
# so it grows with n; runs much shorter than a second are decided by the
# machine's scheduling hiccups instead.
D64=800000 P64=40000 D16=80000 P16=4000
if [ $quick = 1 ]; then
    D64=60000 P64=4000 D16=10000 P16=800
fi
for round in $(seq "$reps"); do
    order="demo nchan"
    [ $((round % 2)) = 0 ] && order="nchan demo"
    for size in 64 16384; do
        D=$D64 P=$P64
        [ $size = 16384 ] && D=$D16 P=$P16
        for ch in 1 100; do
            for subs in 100 1000; do
                n=$((D / subs))
                [ $n -gt $((P / ch)) ] && n=$((P / ch))
                np=$((ch < 4 ? ch : 4))
                for mode in eventsource longpoll stream websocket; do
                    for srv in $order; do
                        # shellcheck disable=SC2046 # mode_args is words on purpose
                        res=$(client $srv -m $mode $(mode_args $srv $mode) -c $ch -s $subs -P $np \
                            --pipeline 8 -n $n -b $size --ch-prefix "c${size}_")
                        printf '%s\t%s\t%s\t%s\n' $srv "$mode/$ch/$subs/$size" "$round" \
                            "${res:-RESULT errors=1}" >>"$log"
                    done
                done
            done
        done
    done
    echo "bench-chan: round $round done ($(($(date +%s) - t0)) s)" >&2
done

rep=$(report "$log")
echo "$rep"
echo "bench-chan: $(($(date +%s) - t0)) s; RESULT lines in $log" >&2
if [ -n "$results" ] && [ $quick = 0 ]; then
    mkdir -p "$results"
    base=$results/$(date +%Y-%m-%d)-chan
    out=$base.txt i=2
    while [ -e "$out" ]; do out=$base-$i.txt; i=$((i + 1)); done
    {
        echo "# shmkit make bench-chan, $(date '+%Y-%m-%d %H:%M:%S %z'), $reps rounds"
        echo "# commit $(cd "$root" && git describe --always --dirty 2>/dev/null || echo unknown)"
        echo "# kernel $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
        echo "# nchan $(dpkg-query -W -f '${Version}' libnginx-mod-nchan 2>/dev/null) on nginx $(dpkg-query -W -f '${Version}' nginx-light 2>/dev/null)"
        grep '^BENCH ' <<<"$rep"
        echo "# the log: SERVER CASE ROUND RESULT..., zone SERVER SIZE BEFORE AFTER"
        cat "$log"
    } >"$out"
    echo "bench-chan: saved $(grep -c '^BENCH ' "$out") figures and the log in $out" >&2
fi
