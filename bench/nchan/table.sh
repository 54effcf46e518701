#!/usr/bin/env bash
# bench/nchan/table.sh [CLIENT]: the nchan baseline's table in
# bench/README.md. Starts nchan (4 workers, 100 messages kept per channel),
# runs the load client in every mode with 1 and 100 channels, 100 and 1,000
# subscribers, 64 B and 16 KiB messages, at full speed (min(channels, 4)
# publisher connections, 8 requests in flight on each), then every mode at
# a fixed low rate (the control: nchan loses nothing there, so the client
# is not what loses messages at full speed). Prints the markdown table; the
# RESULT lines go to $TABLE_LOG (default /tmp/shmkit-nchan-table.log).
# About 5 minutes.
#   bench/nchan/table.sh --render LOG   prints the table of an earlier run's log
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)

field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

render() { # LOG
    echo "| run | published | pub/s | delivered | deliv/s | lost | dup | reord | p50 ms | p99 ms | server CPU s | deliv / server CPU-s | client CPU s | errors |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    local label res
    while IFS=$'\t' read -r label res; do
        awk -v label="$label" -v res="$res" 'BEGIN {
            n = split(res, kv, " ")
            for (i = 1; i <= n; i++) { split(kv[i], p, "="); f[p[1]] = p[2] }
            lost = f["expected"] ? 100 * f["lost"] / f["expected"] : 0
            printf "| %s | %d | %.0f | %d | %.0f | %.1f%% | %d | %d | %.2f | %.2f | %.2f | %.0f | %.2f | %d |\n",
                label, f["published"], f["publishes_per_s"], f["delivered"], f["deliveries_per_s"],
                lost, f["duplicated"], f["reordered"], f["p50_us"] / 1000, f["p99_us"] / 1000,
                f["server_cpu_s"], f["deliveries_per_server_cpu_s"], f["client_cpu_s"], f["errors"]
        }'
    done <"$1"
}

if [ "${1:-}" = --render ]; then
    render "${2:?usage: table.sh --render LOG}"
    exit 0
fi

client=${1:-$root/build/rel/pubsub-client}
log=${TABLE_LOG:-/tmp/shmkit-nchan-table.log}
[ -x "$client" ] || { echo "table: no client at $client (make pubsub-client)" >&2; exit 1; }
out=$("$root/bench/nchan/nchan.sh" start) || exit 1
eval "${out#NCHAN }"
trap '"$root/bench/nchan/nchan.sh" stop "$prefix"' EXIT
pids=$("$root/bench/nchan/nchan.sh" pids "$prefix")
: >"$log"

run() { # label args...
    local label=$1 res
    shift
    res=$(timeout 300 "$client" -q -p "$port" --server-pids "$pids" "$@")
    printf '%s\t%s\n' "$label" "${res:-RESULT none}" >>"$log"
}

for size in 64 16384; do
    # about D deliveries and at most P publishes per run
    D=600000 P=60000
    [ $size = 16384 ] && D=150000 P=15000
    for ch in 1 100; do
        for subs in 100 1000; do
            n=$((D / subs))
            [ $n -gt $((P / ch)) ] && n=$((P / ch))
            np=$((ch < 4 ? ch : 4))
            for mode in eventsource longpoll stream websocket; do
                run "$mode, $ch ch, $subs subs, $size B" -m "$mode" -c "$ch" -s "$subs" -P "$np" \
                    --pipeline 8 -n "$n" -b "$size"
            done
        done
    done
done
for mode in eventsource longpoll stream websocket; do
    run "$mode, 1 ch, 100 subs, 64 B, 200 msg/s" -m "$mode" -c 1 -s 100 -n 600 -r 200
    run "$mode, 100 ch, 1000 subs, 16384 B, 500 msg/s" -m "$mode" -c 100 -s 1000 -P 4 -n 10 \
        -b 16384 -r 500
done
render "$log"
