#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/redis_http.sh [BUILD_DIR]: the HTTP half of make bench-redis (the
# library half is bench_redis.c). One redis-server (loopback, no
# persistence) and, all started here and stopped at the end:
#   shmkit   two demo instances (shmkit-demo, 2 workers each, their own
#            ports and shm instances) with channels_redis to it;
#   nchan    two Debian nginx with nchan in Redis mode on the same server
#            (bench/nchan/nchan.sh start -w 2 -r URL);
#   floor    one demo instance without channels_redis (the same HTTP path
#            with Redis taken out: publisher and subscribers on it).
# For each case (64 B and 16 KiB, 1 and 100 channels, 100 and 1,000
# EventSource subscribers, at full speed; then 1,000 subscribers at a fixed
# rate: 64 B at 200 msg/s, 16 KiB at 20) the load client
# (BUILD_DIR/pubsub-client) publishes on the first instance and subscribes
# on the second, for shmkit, then nchan, then the floor. Server CPU is the demo masters' trees (or
# nginx's) plus redis-server's. Redis commands per publish: INFO
# commandstats over the run (its own INFO calls taken out) / publishes,
# subscribers' commands included. Prints the table and the BENCH lines;
# the RESULT lines go to $REDIS_HTTP_LOG (default /tmp/shmkit-redis-http.log).
# About 3 minutes. REDIS_HTTP_QUICK=1: only the cases of REDIS_HTTP_CASES
# (default "64:1:1000": SIZE:CHANNELS:SUBSCRIBERS ...), for a try;
# REDIS_HTTP_KEEP=1 keeps the servers' directory (configurations, logs).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
bdir=${1:-$root/build/rel}
client=$bdir/pubsub-client
demo=$bdir/shmkit-demo
log=${REDIS_HTTP_LOG:-/tmp/shmkit-redis-http.log}
workers=2
stored=10

die() { echo "redis_http: $*" >&2; exit 1; }
[ -x "$client" ] || die "no $client (make pubsub-client)"
[ -x "$demo" ] || die "no $demo (make VARIANT=rel all)"
command -v redis-server >/dev/null || die "no redis-server (mk/deps.sh test)"

work=$(mktemp -d /tmp/shmkit-redis-http.XXXXXX) || die "mktemp failed"
rpid= demo_pids=() nchan_prefixes=()
cleanup() {
    local p
    for p in "${demo_pids[@]}"; do kill -QUIT "$p" 2>/dev/null; done
    for p in "${demo_pids[@]}"; do wait "$p" 2>/dev/null; done
    for p in "${nchan_prefixes[@]}"; do "$root/bench/nchan/nchan.sh" stop "$p"; done
    [ -n "$rpid" ] && kill -KILL "$rpid" 2>/dev/null && wait "$rpid" 2>/dev/null
    if [ "${REDIS_HTTP_KEEP:-0}" = 1 ]; then echo "redis_http: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

# below the ephemeral range (the relays' connections take ports there), no
# socket of any state on it; $(free_port) runs in a subshell, whose RANDOM
# does not move the caller's: the callers use distinct ranges
port_free() { ! ss -Htan "sport = :$1" 2>/dev/null | grep -q .; }
free_port() { # SLOT: a port in 20000 + SLOT * 2000 .. + 1999
    local p
    while :; do
        p=$((20000 + ${1:-0} * 2000 + RANDOM % 2000))
        port_free "$p" && { echo "$p"; return; }
    done
}

# ---- redis-server ----
rport=$(free_port 0)
redis-server --port "$rport" --bind 127.0.0.1 --dir "$work" --save '' --appendonly no \
    --daemonize no --logfile "$work/redis.log" --protected-mode no &
rpid=$!
for _ in $(seq 100); do
    [ "$(redis-cli -p "$rport" ping 2>/dev/null)" = PONG ] && break
    sleep 0.05
done
[ "$(redis-cli -p "$rport" ping 2>/dev/null)" = PONG ] || die "redis-server did not start"
calls() { # every call the server ran so far
    redis-cli -p "$rport" info commandstats | grep -o 'calls=[0-9]*' | cut -d= -f2 | paste -sd+ | bc
}

# ---- the demo instances ----
demo_start() { # NAME REDIS(0|1) SLOT: prints the port; the master's pid goes in $work/NAME.master
    local name=$1 redis=$2 port i
    port=$(free_port "$3")
    {
        echo "worker_processes $workers;"
        echo "pid $work/$name.pid;"
        echo "shm_instance rh${name}$$;"
        echo "shm_mapping named;"
        echo "bus_queue 1m;"
        [ "$redis" = 1 ] && echo "channels_redis redis://127.0.0.1:$rport/0 namespace=bench;"
        echo "http {"
        echo "  push_stream_shared_memory_size 256m;"
        echo "  push_stream_max_messages_stored_per_channel $stored;"
        echo "  push_stream_message_ttl 10m;"
        echo "  client_max_body_size 1m;"
        echo "  server {"
        echo "    listen 127.0.0.1:$port;"
        echo "    location /channels-stats { push_stream_channels_statistics; }"
        echo "    location /pub { push_stream_publisher admin; push_stream_channels_path \$arg_id;"
        echo "                    push_stream_store_messages on; }"
        echo "    location ~ /sub/(.*) { push_stream_subscriber eventsource;"
        echo "                           push_stream_channels_path \$1; }"
        echo "  }"
        echo "}"
    } >"$work/$name.conf"
    "$demo" -c "$work/$name.conf" >"$work/$name.log" 2>&1 &
    echo $! >"$work/$name.master"
    for i in $(seq 200); do
        if curl -s --max-time 1 "http://127.0.0.1:$port/channels-stats" |
            grep -q "\"by_worker\": \[{.*}, {"; then
            if [ "$redis" = 0 ] || curl -s "http://127.0.0.1:$port/channels-stats" |
                grep -q '"state": "up"'; then
                echo "$port"
                return 0
            fi
        fi
        sleep 0.05
    done
    cat "$work/$name.log" >&2
    die "demo $name did not come up"
}

pa=$(demo_start a 1 1); demo_pids+=("$(cat "$work/a.master")")
pb=$(demo_start b 1 2); demo_pids+=("$(cat "$work/b.master")")
pf=$(demo_start f 0 3); demo_pids+=("$(cat "$work/f.master")")
shmkit_pids="${demo_pids[0]},${demo_pids[1]},$rpid"
floor_pids="${demo_pids[2]}"

# ---- nchan in Redis mode, twice ----
nchan_ports=() nchan_pids=()
for _ in 1 2; do
    out=$("$root/bench/nchan/nchan.sh" start -w "$workers" -b "$stored" -r "redis://127.0.0.1:$rport") ||
        die "nchan did not start (mk/deps.sh bench)"
    eval "${out#NCHAN }" # port= pid= prefix=
    nchan_prefixes+=("$prefix")
    nchan_ports+=("$port")
    nchan_pids+=("$pid")
done
nchan_pids="${nchan_pids[0]},${nchan_pids[1]},$rpid"

: >"$log"
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<"$2"; }

run() { # SYSTEM LABEL PUB_PORT SUB_PORT PIDS args...: the RESULT line, plus cmds=
    local sys=$1 label=$2 pp=$3 sp=$4 pids=$5 res c0 c1
    shift 5
    c0=$(calls)
    res=$(timeout 300 "$client" -q -m eventsource --server-pids "$pids" \
        --pub-url "http://127.0.0.1:$pp/pub?id=%CH%" --sub-url "http://127.0.0.1:$sp/sub/%CH%" "$@")
    c1=$(calls)
    res=${res:-RESULT none}
    # the two INFO calls of calls() are counted in c1
    res="$res redis_calls=$((c1 - c0 - 1))"
    printf '%s\t%s\t%s\n' "$sys" "$label" "$res" >>"$log"
    echo "$res"
}

if [ "${REDIS_HTTP_QUICK:-0}" = 1 ]; then
    cases=${REDIS_HTTP_CASES:-64:1:1000}
else
    cases="64:1:100 64:1:1000 64:100:100 64:100:1000 16384:1:100 16384:1:1000 16384:100:100 16384:100:1000"
fi
# then the controls at a fixed rate every system keeps up with: latency
# without queueing, and no loss where the full-speed runs overload B
[ "${REDIS_HTTP_QUICK:-0}" = 1 ] || cases="$cases 64:1:1000:200 16384:1:1000:20"
for c in $cases; do
    IFS=: read -r size ch subs rate <<<"$c"
    # about D deliveries and at most P publishes per run
    D=4000000 P=10000
    [ "$size" = 16384 ] && D=300000 P=3000
    n=$((D / subs))
    [ $n -gt $((P / ch)) ] && n=$((P / ch))
    np=$((ch < 4 ? ch : 4))
    label="$size B, $ch ch, $subs subs"
    args=(-c "$ch" -s "$subs" -P "$np" --pipeline 8 -b "$size" --ch-prefix "r$RANDOM-")
    if [ -n "$rate" ]; then
        label="$label, $rate msg/s"
        args+=(-r "$rate" -n $((rate * 10)))
    else
        args+=(-n "$n")
    fi
    echo "== $label" >&2
    run shmkit "$label" "$pa" "$pb" "$shmkit_pids" "${args[@]}" >/dev/null
    run nchan_redis "$label" "${nchan_ports[0]}" "${nchan_ports[1]}" "$nchan_pids" "${args[@]}" >/dev/null
    run floor "$label" "$pf" "$pf" "$floor_pids" "${args[@]}" >/dev/null
done

# ---- the table ----
echo "| system | case | published | pub/s | delivered | deliv/s on B | lost | dup | p50 ms | p99 ms | server CPU s | deliv / server CPU-s | Redis cmds / publish | errors |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
while IFS=$'\t' read -r sys label res; do
    awk -v sys="$sys" -v label="$label" -v res="$res" 'BEGIN {
        n = split(res, kv, " ")
        for (i = 1; i <= n; i++) { split(kv[i], p, "="); f[p[1]] = p[2] }
        cmds = sys == "floor" ? "-" : sprintf("%.2f", f["published"] ? f["redis_calls"] / f["published"] : 0)
        printf "| %s | %s | %d | %.0f | %d | %.0f | %d | %d | %.2f | %.2f | %.2f | %.0f | %s | %d |\n",
            sys, label, f["published"], f["publishes_per_s"], f["delivered"], f["deliveries_per_s"],
            f["lost"], f["duplicated"], f["p50_us"] / 1000, f["p99_us"] / 1000, f["server_cpu_s"],
            f["deliveries_per_server_cpu_s"], cmds, f["errors"]
    }'
done <"$log"

# ---- the BENCH lines ----
get() { # SYSTEM LABEL FIELD
    awk -F'\t' -v s="$1" -v l="$2" '$1 == s && $2 == l { print $3 }' "$log" | head -1 |
        sed -n "s/.* $3=\([^ ]*\).*/\1/p"
}
sum_lost() { awk -F'\t' -v s="$1" '$1 == s { if (match($3, / lost=[0-9]+/)) t += substr($3, RSTART + 6, RLENGTH - 6) } END { print t + 0 }' "$log"; }
bench() { # NAME VALUE UNIT BASE_NAME BASE_VALUE
    awk -v n="$1" -v v="$2" -v u="$3" -v b="$4" -v bv="$5" \
        'BEGIN { printf "BENCH %s %.6g %s baseline=%s %.6g ratio=%.4f\n", n, v, u, b, bv, bv != 0 ? v / bv : 0 }'
}
k="64 B, 1 ch, 1000 subs"
bench redis.es1000_deliveries "$(get shmkit "$k" deliveries_per_s)" deliveries/s nchan_redis \
    "$(get nchan_redis "$k" deliveries_per_s)"
bench redis.es1000_p99 "$(get shmkit "$k" p99_us)" us nchan_redis "$(get nchan_redis "$k" p99_us)"
bench redis.lost "$(sum_lost shmkit)" deliveries nchan_redis "$(sum_lost nchan_redis)"
cpp() { awk -v c="$(get "$1" "$k" redis_calls)" -v p="$(get "$1" "$k" published)" 'BEGIN { print p ? c / p : 0 }'; }
bench redis.commands_per_publish "$(cpp shmkit)" commands nchan_redis "$(cpp nchan_redis)"
bench redis.es1000_server_cpu "$(get shmkit "$k" deliveries_per_server_cpu_s)" deliveries/cpu-s \
    nchan_redis "$(get nchan_redis "$k" deliveries_per_server_cpu_s)"
bench redis.es1000_vs_floor "$(get shmkit "$k" deliveries_per_s)" deliveries/s no_redis_floor \
    "$(get floor "$k" deliveries_per_s)"
k="64 B, 1 ch, 1000 subs, 200 msg/s"
if [ -n "$(get shmkit "$k" p99_us)" ]; then
    bench redis.es1000_p99_at200 "$(get shmkit "$k" p99_us)" us nchan_redis "$(get nchan_redis "$k" p99_us)"
fi
