#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/chan/demo.sh: start and stop the demo server for the pub/sub
# benchmark, as bench/nchan/nchan.sh does nchan, with the same interface.
#
#   bench/chan/demo.sh start [-w WORKERS] [-b BUFFER] [-m SHM] [-p PORT]
#       Makes a temporary prefix directory, writes demo.conf there from
#       bench/chan/demo.conf.in (WORKERS workers, default 4; BUFFER messages
#       kept per channel, default 100; SHM the store's zone, default 256m;
#       PORT a free loopback port, picked when not given; the zones named
#       under an instance of their own), starts build/rel/shmkit-demo on
#       127.0.0.1:PORT and waits until it answers. Prints one line:
#           DEMO port=PORT pid=MASTER_PID prefix=PREFIX instance=NAME
#   bench/chan/demo.sh stop PREFIX
#       SIGQUIT to the master (graceful), up to 5 s, then SIGKILL to the
#       master and its workers; removes PREFIX.
#   bench/chan/demo.sh pids PREFIX
#       The master's pid and its workers', comma-separated (--server-pids).
#   bench/chan/demo.sh zone PREFIX
#       The store's zone: ZONE bytes=B stored=N: B the bytes of the slab
#       pages given out (pages in use x page size, from `shmkit stat
#       --json`), N the messages stored. nchan.sh zone prints the same
#       figures of nchan's zone (its stub status counts pages the same way).
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
DEMO=${DEMO:-$root/build/rel/shmkit-demo}
SHMKIT=${SHMKIT:-$root/build/rel/shmkit}

die() { echo "demo.sh: $*" >&2; exit 1; }
. "$root/bench/server.sh"

port_free() { ! ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }

start() {
    local workers=4 buffer=100 shm=256m port=
    while getopts "w:b:m:p:" o; do
        case $o in
        w) workers=$OPTARG ;;
        b) buffer=$OPTARG ;;
        m) shm=$OPTARG ;;
        p) port=$OPTARG ;;
        *) die "usage: demo.sh start [-w WORKERS] [-b BUFFER] [-m SHM] [-p PORT]" ;;
        esac
    done
    [ -x "$DEMO" ] || die "no $DEMO (make)"
    local prefix instance tries=0 p i pid=
    prefix=$(mktemp -d /tmp/shmkit-bchan.XXXXXX) || die "mktemp failed"
    instance=bchan_${prefix##*.}
    echo "$instance" >"$prefix/instance"
    while :; do
        p=${port:-$((20000 + RANDOM % 40000))}
        if [ -z "$port" ] && ! port_free "$p"; then
            continue
        fi
        sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$p|g" -e "s|@WORKERS@|$workers|g" \
            -e "s|@BUFFER@|$buffer|g" -e "s|@SHM@|$shm|g" -e "s|@INSTANCE@|$instance|g" \
            "$here/demo.conf.in" >"$prefix/demo.conf"
        "$DEMO" -c "$prefix/demo.conf" >"$prefix/demo.log" 2>&1 </dev/null &
        pid=$!
        for i in $(seq 100); do
            kill -0 "$pid" 2>/dev/null || break
            if [ -s "$prefix/shmkit-demo.pid" ] &&
                curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/channels-stats"; then
                echo "$p" >"$prefix/port"
                echo "DEMO port=$p pid=$pid prefix=$prefix instance=$instance"
                return 0
            fi
            sleep 0.05
        done
        if kill -0 "$pid" 2>/dev/null; then
            cat "$prefix/demo.log" >&2
            echo "$p" >"$prefix/port"
            stop "$prefix"
            die "the demo started but does not answer on 127.0.0.1:$p"
        fi
        tries=$((tries + 1))
        if [ -n "$port" ] || [ $tries -ge 5 ] || ! grep -qi "in use" "$prefix/demo.log"; then
            cat "$prefix/demo.log" >&2
            rm -rf "$prefix"
            die "the demo did not start"
        fi
    done
}

stop() {
    local prefix=${1:-}
    [ -n "$prefix" ] && [ -f "$prefix/demo.conf" ] || die "usage: demo.sh stop PREFIX (a prefix made by start)"
    local pid
    pid=$(cat "$prefix/shmkit-demo.pid" 2>/dev/null)
    server_stop demo.sh "$pid" kill -QUIT "$pid"
    rm -rf "$prefix"
}

pids() {
    local prefix=${1:-} pid
    pid=$(cat "$prefix/shmkit-demo.pid" 2>/dev/null) || die "no shmkit-demo.pid under '$prefix'"
    server_pids "$pid"
}

zone() {
    local prefix=${1:-} js total free psize stored
    [ -f "$prefix/instance" ] || die "usage: demo.sh zone PREFIX (a prefix made by start)"
    js=$("$SHMKIT" stat --json --instance "$(cat "$prefix/instance")" shmkit_chan) ||
        die "shmkit stat failed"
    psize=$(sed -n 's/.*"page_size":\([0-9]*\).*/\1/p' <<<"$js")
    total=$(sed -n 's/.*"pages_total":\([0-9]*\).*/\1/p' <<<"$js")
    free=$(sed -n 's/.*"pages_free":\([0-9]*\).*/\1/p' <<<"$js")
    stored=$(sed -n 's/.*"chan":{[^}]*"stored":\([0-9]*\).*/\1/p' <<<"$js")
    [ -n "$psize" ] && [ -n "$total" ] && [ -n "$free" ] && [ -n "$stored" ] ||
        die "unexpected shmkit stat output"
    echo "ZONE bytes=$(((total - free) * psize)) stored=$stored"
}

cmd=${1:-}
shift || true
case "$cmd" in
start) start "$@" ;;
stop) stop "$@" ;;
pids) pids "$@" ;;
zone) zone "$@" ;;
*) die "usage: demo.sh start|stop PREFIX|pids PREFIX|zone PREFIX" ;;
esac
