# SPDX-License-Identifier: BSD-2-Clause
# bench/server.sh: what the benchmark's server scripts (bench/nchan/nchan.sh,
# bench/chan/demo.sh) share, sourced by them: a master's children, its
# graceful stop with a bound, and the pid list the load client samples.

# server_children PID: the pids of PID's children
server_children() { ps -o pid= --ppid "$1" 2>/dev/null | tr -d ' '; }

# server_stop NAME PID QUIT_CMD...: a graceful stop of the master PID by
# QUIT_CMD (run as given; SIGQUIT when it fails), then up to 5 s for it to
# go, then SIGKILL to the master and the children it had.
server_stop() {
    local name=$1 pid=$2 i kids
    shift 2
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kids=$(server_children "$pid")
    "$@" 2>/dev/null || kill -QUIT "$pid" 2>/dev/null
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.05
    done
    echo "$name: master $pid still there after 5 s: SIGKILL" >&2
    kill -KILL "$pid" $kids 2>/dev/null
}

# server_pids PID: the master's pid and its children's, comma-separated
server_pids() { echo "$1" $(server_children "$1") | tr ' ' ','; }
