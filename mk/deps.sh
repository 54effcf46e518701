#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# mk/deps.sh: make sure the packages a make target needs are installed.
#   mk/deps.sh test   Check, valgrind, pkg-config (make test, asan, tsan)
#   mk/deps.sh test   ... and what test_demo_http and test_demo_push use: the HTTP
#                     layer's libraries, curl, Node.js and the npm packages of
#                     test/node (npm ci: ws, eventsource, playwright-core),
#                     Debian's chromium for the browser test; hiredis (the
#                     library links it) and the Redis server and tools
#                     test_redis starts its servers and cluster with
#   mk/deps.sh demo   libevent, the HTTP layer's libraries (http_parser,
#                     wslay, nettle), curl (make demo, make run)
#   mk/deps.sh lib    hiredis, which the library links (every build)
#   mk/deps.sh test   ... and the examples' loop libraries (below), tmux
#                     (test_top runs `shmkit top` in a tmux pane)
#   mk/deps.sh examples  the event loops of examples/: libevent, libuv,
#                     liburing (make examples)
#   mk/deps.sh plot   gnuplot (make bench-plot)
#   mk/deps.sh fuzz   clang and its libFuzzer runtime (make fuzz)
#   mk/deps.sh bench  the pub/sub load client's libraries (http_parser, wslay,
#                     nettle) and the nchan baseline: nginx-light with
#                     libnginx-mod-nchan (bench/nchan/, bench/README.md)
#   mk/deps.sh deb    debian/control's Build-Depends (build-essential,
#                     debhelper, hiredis, valgrind-if-available), lintian, and
#                     pkg-config for the tour built against the packages
#                     (make deb, make check-deb; docs/packaging.md)
# As root, missing packages are installed with apt-get, saying so; otherwise
# the packages to install are named and the script fails.
set -u

need=()
node_dir=
have_pc() { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$1"; }
have_h() { [ -e "/usr/include/$1" ] || [ -e "/usr/local/include/$1" ]; }
have_pkg() { dpkg-query -W -f='${db:Status-Abbrev}' "$1" 2>/dev/null | grep -q '^ii'; }
# demo/http*.c: libevent, Node.js's http_parser, wslay (WebSocket frames),
# nettle (SHA-1 and base64 of the WebSocket handshake).
http_layer() {
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    have_pc libevent || need+=(libevent-dev)
    have_h http_parser.h || need+=(libhttp-parser-dev)
    have_h wslay/wslay.h || need+=(libwslay-dev)
    have_pc nettle || need+=(nettle-dev)
}
# examples/*.c: one program per event loop (libevent's is in http_layer).
examples() {
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    have_pc libevent || need+=(libevent-dev)
    have_pc libuv || need+=(libuv1-dev)
    have_pc liburing || need+=(liburing-dev)
}
# test/node: the npm packages the tests' Node clients use, from the lock file.
node_deps() {
    node_dir=$(cd "$(dirname "$0")/.." && pwd)/test/node
    [ -f "$node_dir/package-lock.json" ] || { node_dir=; return; }
    command -v node >/dev/null 2>&1 || need+=(nodejs)
    command -v npm >/dev/null 2>&1 || need+=(npm)
}
npm_ci() {
    [ -n "$node_dir" ] || return 0
    cmp -s "$node_dir/package-lock.json" "$node_dir/node_modules/.shmkit-lock" 2>/dev/null && return 0
    echo "mk/deps.sh: npm ci in test/node"
    if ! (cd "$node_dir" && npm ci --no-audit --no-fund >/tmp/shmkit-npm.log 2>&1); then
        echo "mk/deps.sh: npm ci failed; see /tmp/shmkit-npm.log" >&2
        tail -n 20 /tmp/shmkit-npm.log >&2
        exit 1
    fi
    cp "$node_dir/package-lock.json" "$node_dir/node_modules/.shmkit-lock"
}

# redis/: the library speaks to Redis through hiredis; test_redis and
# bench_redis start redis-server (and a cluster with redis-cli).
redis_deps() {
    have_h hiredis/async.h || need+=(libhiredis-dev)
    command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
    command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
}

case "${1:-}" in
test)
    redis_deps
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    have_pc check || need+=(check)
    command -v valgrind >/dev/null 2>&1 && [ -e /usr/include/valgrind/memcheck.h ] || need+=(valgrind)
    http_layer
    command -v curl >/dev/null 2>&1 || need+=(curl)
    node_deps
    # test_demo_push drives it headless through playwright-core (no browser download)
    [ -x /usr/bin/chromium ] || need+=(chromium)
    examples
    command -v tmux >/dev/null 2>&1 || need+=(tmux)
    ;;
lib)
    have_h hiredis/async.h || need+=(libhiredis-dev)
    ;;
examples)
    examples
    ;;
plot)
    command -v gnuplot >/dev/null 2>&1 || need+=(gnuplot-nox)
    ;;
fuzz)
    have_h hiredis/async.h || need+=(libhiredis-dev)
    command -v clang >/dev/null 2>&1 || need+=(clang)
    ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
        need+=(libclang-rt-dev)
    ;;
demo)
    redis_deps
    http_layer
    command -v curl >/dev/null 2>&1 || need+=(curl)
    ;;
bench)
    redis_deps
    # build/rel/pubsub-client parses responses with http_parser and speaks
    # WebSocket through wslay (nettle checks the handshake's accept key).
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    have_h http_parser.h || need+=(libhttp-parser-dev)
    have_h wslay/wslay.h || need+=(libwslay-dev)
    have_pc nettle || need+=(nettle-dev)
    { command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ]; } || need+=(nginx-light)
    ls /usr/lib/nginx/modules/ngx_nchan_module.so >/dev/null 2>&1 || need+=(libnginx-mod-nchan)
    ;;
deb)
    # debian/control's Build-Depends (and build-essential, which every
    # Debian build assumes), by package: dpkg-checkbuilddeps checks them so
    have_pkg build-essential || need+=(build-essential)
    have_pkg dpkg-dev || need+=(dpkg-dev)
    have_pkg debhelper || need+=(debhelper)
    have_pkg libhiredis-dev || need+=(libhiredis-dev)
    have_pkg valgrind-if-available || need+=(valgrind-if-available)
    # the check: lintian, and pkg-config for the tour built against the packages
    have_pkg lintian || need+=(lintian)
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    ;;
*)
    echo "usage: $0 lib|test|demo|examples|plot|fuzz|bench|deb" >&2
    exit 2
    ;;
esac

if [ ${#need[@]} -eq 0 ]; then
    npm_ci
    exit 0
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "mk/deps.sh: installing missing packages with apt-get: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q "${need[@]}" >/tmp/shmkit-apt.log 2>&1; then
        apt-get update -q >>/tmp/shmkit-apt.log 2>&1
        if ! apt-get install -y -q "${need[@]}" >>/tmp/shmkit-apt.log 2>&1; then
            echo "mk/deps.sh: apt-get failed; see /tmp/shmkit-apt.log" >&2
            tail -n 20 /tmp/shmkit-apt.log >&2
            exit 1
        fi
    fi
    echo "mk/deps.sh: installed ${need[*]}"
    npm_ci
    exit 0
fi

echo "mk/deps.sh: missing packages: ${need[*]}" >&2
echo "mk/deps.sh: install them with: sudo apt-get install ${need[*]}" >&2
exit 1
