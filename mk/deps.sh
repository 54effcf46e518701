#!/usr/bin/env bash
# mk/deps.sh: make sure the packages a make target needs are installed.
#   mk/deps.sh test   Check, valgrind, pkg-config (make test, asan, tsan)
#   mk/deps.sh demo   libevent, curl (make demo, make run)
#   mk/deps.sh fuzz   clang and its libFuzzer runtime (make fuzz)
# As root, missing packages are installed with apt-get, saying so; otherwise
# the packages to install are named and the script fails.
set -u

need=()
have_pc() { command -v pkg-config >/dev/null 2>&1 && pkg-config --exists "$1"; }

case "${1:-}" in
test)
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    have_pc check || need+=(check)
    command -v valgrind >/dev/null 2>&1 && [ -e /usr/include/valgrind/memcheck.h ] || need+=(valgrind)
    ;;
fuzz)
    command -v clang >/dev/null 2>&1 || need+=(clang)
    ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
        need+=(libclang-rt-dev)
    ;;
demo)
    command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
    have_pc libevent || need+=(libevent-dev)
    command -v curl >/dev/null 2>&1 || need+=(curl)
    ;;
*)
    echo "usage: $0 test|demo|fuzz" >&2
    exit 2
    ;;
esac

[ ${#need[@]} -eq 0 ] && exit 0

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
    exit 0
fi

echo "mk/deps.sh: missing packages: ${need[*]}" >&2
echo "mk/deps.sh: install them with: sudo apt-get install ${need[*]}" >&2
exit 1
