#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/nchan/nchan.sh: start and stop the nchan baseline of the pub/sub
# benchmark (Debian's nginx-light + libnginx-mod-nchan; mk/deps.sh bench).
#
#   bench/nchan/nchan.sh start [-w WORKERS] [-b BUFFER] [-m SHM] [-p PORT] [-r REDIS_URL]
#       Makes a temporary prefix directory, writes nginx.conf there from
#       bench/nchan/nginx.conf.in (WORKERS nginx workers, default 4; BUFFER
#       messages kept per channel, default 100; SHM shared memory, default
#       256m; PORT a free loopback port, picked when not given; REDIS_URL,
#       e.g. redis://127.0.0.1:6379: nchan in Redis mode, nchan_redis_url to
#       that server and nchan_use_redis on, so two such nginx share their
#       channels through it; default: memory only), starts
#       nginx on 127.0.0.1:PORT and waits until it answers. Prints one line:
#           NCHAN port=PORT pid=MASTER_PID prefix=PREFIX
#   bench/nchan/nchan.sh stop PREFIX
#       nginx -s quit, waits up to 5 s for the master to go, then SIGKILLs
#       the master and its workers; removes PREFIX.
#   bench/nchan/nchan.sh pids PREFIX
#       The master's pid and its workers', comma-separated (for the load
#       client's --server-pids).
#   bench/nchan/nchan.sh zone PREFIX
#       nchan's shared memory: ZONE bytes=B stored=N, from its stub status:
#       B its "shared memory used" (the slab pages in use x page size, in
#       KiB there), N its "stored messages". bench/chan/demo.sh zone prints
#       the same figures of the demo's store.
set -u
here=$(cd "$(dirname "$0")" && pwd)
NGINX=${NGINX:-$(command -v nginx || echo /usr/sbin/nginx)}
MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so

die() { echo "nchan.sh: $*" >&2; exit 1; }
. "$here/../server.sh"

port_free() { ! ss -Htln "sport = :$1" 2>/dev/null | grep -q .; }

start() {
    local workers=4 buffer=100 shm=256m port= redis=
    while getopts "w:b:m:p:r:" o; do
        case $o in
        w) workers=$OPTARG ;;
        b) buffer=$OPTARG ;;
        m) shm=$OPTARG ;;
        p) port=$OPTARG ;;
        r) redis=$OPTARG ;;
        *) die "usage: nchan.sh start [-w WORKERS] [-b BUFFER] [-m SHM] [-p PORT] [-r REDIS_URL]" ;;
        esac
    done
    case "$redis" in
    '' | redis://[A-Za-z0-9.:/\[\]-]*) ;;
    *) die "-r: a redis:// URL of host, port and database only" ;;
    esac
    local redis_conf=
    [ -n "$redis" ] && redis_conf="nchan_redis_url \"$redis\"; nchan_use_redis on;"
    [ -x "$NGINX" ] || die "no nginx (run mk/deps.sh bench as root)"
    [ -e "$MODULE" ] || die "no $MODULE (run mk/deps.sh bench as root)"
    local prefix tries=0 p
    prefix=$(mktemp -d /tmp/shmkit-nchan.XXXXXX) || die "mktemp failed"
    # The workers run as nobody when started by root: they must reach PREFIX.
    chmod 755 "$prefix"
    mkdir -p "$prefix/tmp"
    while :; do
        p=${port:-$((20000 + RANDOM % 40000))}
        if [ -z "$port" ] && ! port_free "$p"; then
            continue
        fi
        sed -e "s|@PREFIX@|$prefix|g" -e "s|@PORT@|$p|g" -e "s|@WORKERS@|$workers|g" \
            -e "s|@BUFFER@|$buffer|g" -e "s|@SHM@|$shm|g" -e "s|@REDIS@|$redis_conf|g" \
            "$here/nginx.conf.in" >"$prefix/nginx.conf"
        if "$NGINX" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" 2>"$prefix/start.err"; then
            break
        fi
        tries=$((tries + 1))
        if [ -n "$port" ] || [ $tries -ge 5 ] || ! grep -q "Address already in use" "$prefix/start.err"; then
            cat "$prefix/start.err" >&2
            rm -rf "$prefix"
            die "nginx did not start"
        fi
    done
    echo "$p" >"$prefix/port"
    local i pid=
    for i in $(seq 100); do
        pid=$(cat "$prefix/nginx.pid" 2>/dev/null)
        if [ -n "$pid" ] && curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$p/nchan_status"; then
            echo "NCHAN port=$p pid=$pid prefix=$prefix"
            return 0
        fi
        sleep 0.05
    done
    cat "$prefix/error.log" >&2
    stop "$prefix"
    die "nginx started but does not answer on 127.0.0.1:$p"
}

stop() {
    local prefix=${1:-}
    [ -n "$prefix" ] && [ -f "$prefix/nginx.conf" ] || die "usage: nchan.sh stop PREFIX (a prefix made by start)"
    local pid
    pid=$(cat "$prefix/nginx.pid" 2>/dev/null)
    server_stop nchan.sh "$pid" "$NGINX" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/error.log" -s quit
    rm -rf "$prefix"
}

pids() {
    local prefix=${1:-} pid
    pid=$(cat "$prefix/nginx.pid" 2>/dev/null) || die "no nginx.pid under '$prefix'"
    server_pids "$pid"
}

zone() {
    local prefix=${1:-} st kb stored
    [ -f "$prefix/port" ] || die "usage: nchan.sh zone PREFIX (a prefix made by start)"
    st=$(curl -s --max-time 5 "http://127.0.0.1:$(cat "$prefix/port")/nchan_status") ||
        die "no answer from /nchan_status"
    kb=$(sed -n 's/^shared memory used: \([0-9]*\)K$/\1/p' <<<"$st")
    stored=$(sed -n 's/^stored messages: \([0-9]*\)$/\1/p' <<<"$st")
    [ -n "$kb" ] && [ -n "$stored" ] || die "unexpected /nchan_status answer"
    echo "ZONE bytes=$((kb * 1024)) stored=$stored"
}

cmd=${1:-}
shift || true
case "$cmd" in
start) start "$@" ;;
stop) stop "$@" ;;
pids) pids "$@" ;;
zone) zone "$@" ;;
*) die "usage: nchan.sh start|stop PREFIX|pids PREFIX|zone PREFIX" ;;
esac
