#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# demo/walkthrough.sh BUILD_DIR CONF: `make demo`. Starts the demo server,
# walks through what shmkit does (send, broadcast and the replies in the log,
# a burst against limit_req, /status; push-stream's interface: two
# subscribers in different modes on different workers get a message
# published on a third, a late subscriber catches up with backtrack, a
# channel deleted, a worker killed while holding subscribers leaves nothing
# pinned; a worker killed with SIGKILL and
# respawned, a reload that keeps the zone's data, a graceful stop; the
# configuration test, the reload and the stop go through the demo's own
# command line: -t, -s reload, -s quit), prints each step and its result,
# and fails if a step does not do what it should.
set -u
bdir=$1
conf=$2
demo=$bdir/shmkit-demo
tool=$bdir/shmkit
log=$(mktemp /tmp/shmkit-demo.XXXXXX.log)
base=http://127.0.0.1:8080
fail=0
master=

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
ok() { printf '   ok: %s\n' "$*"; }
bad() { printf '   FAILED: %s\n' "$*"; fail=1; }
get() { curl -s --max-time 5 "$@"; }

cleanup() {
    if [ -n "$master" ] && kill -0 "$master" 2>/dev/null; then
        kill -TERM "$master" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$master" 2>/dev/null
    fi
}
trap cleanup EXIT

# wait_for CMD...: retry a condition for up to 5 s
wait_for() {
    for _ in $(seq 100); do "$@" >/dev/null 2>&1 && return 0; sleep 0.05; done
    return 1
}
workers_json() { get "$base/workers"; }
nworkers() { workers_json | grep -o '"pid":[0-9]*' | wc -l; }
pids() { workers_json | grep -o '"pid":[0-9]*' | cut -d: -f2; }
log_has() { grep -qF -- "$1" "$log"; }

step "check the configuration: $demo -t -c $conf (the library's directives and the demo's)"
"$demo" -t -c "$conf" || { bad "configuration test failed"; exit 1; }

step "start the server: $demo -c $conf (log: $log)"
"$demo" -c "$conf" >"$log" 2>&1 &
master=$!
if wait_for test "$(nworkers)" -eq 4; then
    ok "master $master and 4 workers are up"
else
    bad "the workers did not come up"; cat "$log"; exit 1
fi
get "$base/workers"; echo

set -- $(pids)
p1=$1 p2=$2
step "send: GET /send/$p2/hi  (the worker that takes the request sends alert \"hello\" to $p2)"
out=$(get "$base/send/$p2/hi")
echo "   $out"
[ "$out" = "Sent alert to pid $p2" ] && ok "sent" || bad "unexpected answer"
if wait_for log_has "sender " && wait_for log_has "replied hello to you too. you said hi"; then
    grep -E "says hi|you said hi" "$log" | sed 's/^/   log: /'
    ok "worker $p2 got it, and its reply came back"
else
    bad "no hello/reply in the log"
fi

step "send to a pid that is not a worker: GET /send/1/x"
code=$(curl -s -o /tmp/shk-demo-body -w '%{http_code}' "$base/send/1/x")
echo "   HTTP $code: $(cat /tmp/shk-demo-body)"
[ "$code" = 500 ] && ok "refused with the error text" || bad "expected 500"

step "broadcast: GET /broadcast/everyone  (every worker, the sender included)"
out=$(get "$base/broadcast/everyone")
echo "   $out"
if wait_for test "$(grep -c 'says everyone' "$log")" -eq 4 &&
   wait_for test "$(grep -c 'you said everyone' "$log")" -eq 4; then
    grep -E "says everyone|you said everyone" "$log" | sed 's/^/   log: /'
    ok "4 workers said hello, 4 replies came back"
else
    bad "expected 4 hellos and 4 replies"
fi

step "limit_req: 20 requests back to back on one connection to /limited (rate=10r/s burst=5 nodelay)"
args=(); for i in $(seq 20); do args+=(-o /dev/null "$base/limited"); done
codes=$(curl -s -w '%{http_code}\n' "${args[@]}")
n200=$(echo "$codes" | grep -c 200); n503=$(echo "$codes" | grep -c 503)
echo "   200: $n200   503: $n503"
[ "$n200" -ge 6 ] && [ "$n200" -le 7 ] && [ "$n503" -ge 13 ] && ok "the burst was cut as nginx would" \
    || bad "expected 6 (or 7 if the burst spanned a leak tick) passes"

step "/status (the same document as: shmkit stat --json --instance demo)"
get "$base/status" | head -c 600; echo " ..."
"$tool" stat --instance demo one | sed 's/^/   /' | head -30

# ---- push-stream's interface (docs/pushstream.md) ------------------------------------
tmp=$(mktemp -d /tmp/shmkit-demo-push.XXXXXX)
stats() { get "$base/channels-stats${1:-}"; }
# subscribers of the pid's worker, from /channels-stats
subs_of() { stats | grep -o "\"pid\": \"$1\", \"subscribers\": [0-9]*" | grep -o '[0-9]*$'; }
holder() { stats | grep -o '"pid": "[0-9]*", "subscribers": [1-9][0-9]*' | head -1 | grep -o '"[0-9]*"' | tr -d '"'; }
chan_subs() { get "$base/channels-stats?id=$1" | grep -o '"subscribers": [0-9]*' | grep -o '[0-9]*$'; }
pids_json() { stats | grep -o '"pid": "[0-9]*", "subscribers": [0-9]*'; }

step "push-stream: the page at / (open $base/ in a browser: live plots of the stats channel, a form, a subscriber pane)"
code=$(curl -s -o "$tmp/page" -w '%{http_code}' "$base/")
echo "   GET / -> HTTP $code, $(wc -c <"$tmp/page") bytes: $(grep -o '<title>[^<]*' "$tmp/page" | cut -c8-)"
[ "$code" = 200 ] && grep -q "EventSource" "$tmp/page" && ok "the page is served" || bad "no page"
if wait_for sh -c "curl -s '$base/channels-stats?id=shmkit-stats' | grep -q '\"published_messages\": [1-9]'"; then
    echo "   $(get "$base/channels-stats?id=shmkit-stats")"
    ok "the worker in slot 0 publishes the page's figures on shmkit-stats every second"
else
    bad "no stats channel"
fi

step "push-stream: two subscribers in different modes, on different workers (streaming /sub/demo, EventSource /ev/demo)"
curl -sN --max-time 60 "$base/sub/demo" >"$tmp/stream" 2>/dev/null &
sub1=$!
wait_for test "$(chan_subs demo)" = 1
w1=$(holder)
sub2=
for _ in $(seq 30); do
    curl -sN --max-time 60 "$base/ev/demo" >"$tmp/es" 2>/dev/null &
    sub2=$!
    wait_for test "$(chan_subs demo)" = 2
    [ "$(subs_of "$w1")" = 1 ] && break   # the second one is on another worker
    kill "$sub2" 2>/dev/null; wait "$sub2" 2>/dev/null
    wait_for test "$(chan_subs demo)" = 1
done
echo "   by worker: $(pids_json | tr '\n' ' ')"
[ "$(subs_of "$w1")" = 1 ] && [ "$(chan_subs demo)" = 2 ] && ok "streaming on worker $w1, EventSource on another" \
    || bad "could not place the subscribers on two workers"
# publish through a connection taken by a third worker: /workers on that
# connection says who it is, and the publish follows on the same connection
w2=$(pids_json | grep -v "\"$w1\"" | grep -v '": 0$' | head -1 | grep -o '"[0-9]*"' | head -1 | tr -d '"')
pub_on_third() { # channel message
    local line len body
    for _ in $(seq 50); do
        exec 3<>/dev/tcp/127.0.0.1/8080 || return 1
        printf 'GET /workers HTTP/1.1\r\nHost: demo\r\n\r\n' >&3
        len=0
        while IFS= read -r line <&3; do
            line=${line%$'\r'}
            [ -z "$line" ] && break
            case "$line" in [Cc]ontent-[Ll]ength:*) len=${line#*: } ;; esac
        done
        body=$(head -c "$len" <&3)
        me=$(echo "$body" | sed -n 's/.*"me":\([0-9]*\)}.*/\1/p')
        if [ -n "$me" ] && [ "$me" != "$w1" ] && [ "$me" != "$w2" ]; then
            printf 'POST /pub?id=%s HTTP/1.1\r\nHost: demo\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s' \
                "$1" "${#2}" "$2" >&3
            tr -d '\r' <&3 | tail -1 >"$tmp/pub"
            exec 3<&-
            return 0
        fi
        exec 3<&-
    done
    return 1
}
pub_on_third demo "hello, subscribers" || bad "no third worker took the publish"
echo "   published by worker $me: $(cat "$tmp/pub")"
if wait_for grep -q "hello, subscribers" "$tmp/stream" && wait_for grep -q "data: hello, subscribers" "$tmp/es"; then
    echo "   streaming got: $(tr -d '\r' <"$tmp/stream" | head -1)"
    echo "   EventSource got: $(grep -E '^(id|data):' "$tmp/es" | tr '\n' ' ')"
    ok "both got the message published on worker $me"
else
    bad "the subscribers did not get it"
fi

step "push-stream: a late subscriber catches up with backtrack (/lp/demo.b3, long-polling)"
for i in 2 3 4; do get -d "message $i" "$base/pub?id=demo" >/dev/null; done
curl -s -D "$tmp/lph" -o "$tmp/lp" "$base/lp/demo.b3"
echo "   answer: $(tr '\n' '|' <"$tmp/lp")   $(grep -i '^etag' "$tmp/lph" | tr -d '\r')"
[ "$(grep -c message "$tmp/lp")" = 3 ] && ok "the last 3 stored messages at once; its Etag resumes exactly" || bad "expected 3 messages"
etag=$(grep -i '^etag' "$tmp/lph" | cut -d' ' -f2- | tr -d '\r')
code=$(curl -s -o /dev/null -w '%{http_code}' -H "If-None-Match: $etag" "$base/poll/demo")
echo "   polling with If-None-Match: $etag -> HTTP $code"
[ "$code" = 304 ] && ok "nothing newer: 304" || bad "expected 304"

step "push-stream: the channel deleted (DELETE /pub?id=demo): subscribers get the deleted message and are closed"
echo "   $(curl -s -X DELETE "$base/pub?id=demo")"
if wait_for sh -c "! kill -0 $sub1 2>/dev/null" && wait_for grep -q "Channel deleted" "$tmp/es"; then
    ok "both subscribers got \"Channel deleted\" and their streams ended"
else
    bad "subscribers still there"
fi
kill "$sub2" 2>/dev/null

step "push-stream: a worker killed (SIGKILL) while it holds subscribers: nothing stays pinned"
held=()
for i in 1 2 3 4 5 6; do curl -sN --max-time 60 "$base/sub/held" >/dev/null 2>&1 & held+=($!); done
wait_for test "$(chan_subs held)" = 6
victim=$(holder)
for i in $(seq 20); do get -d "m$i" "$base/pub?id=held" >/dev/null; done
echo "   by worker: $(pids_json | tr '\n' ' ')"
n_victim=$(subs_of "$victim")
kill -9 "$victim"
if wait_for test "$(chan_subs held)" = $((6 - n_victim)); then
    echo "   after: $(stats | grep -o '"stored_messages": [0-9]*, "messages_in_trash": [0-9]*, [^[]*"subscribers": [0-9]*')"
    ok "worker $victim's $n_victim subscribers are gone from the store's counts"
else
    bad "the store still counts them: $(get "$base/channels-stats?id=held")"
fi
wait_for test "$(nworkers)" -eq 4
[ "$(stats | grep -o '"messages_in_trash": [0-9]*' | grep -o '[0-9]*$')" = 0 ] &&
    ok "no message in flight is held for the dead worker (messages_in_trash 0)" || bad "messages pinned"
echo "   shmkit stat --instance demo shmkit_chan:"
"$tool" stat --instance demo shmkit_chan 2>&1 | sed 's/^/     /' | head -40
kill "${held[@]}" 2>/dev/null
rm -rf "$tmp"
set -- $(pids)
p1=${1:-}

step "kill -9 worker $p1 and watch the master respawn it in the same slot"
slot_of() { workers_json | grep -o "\"slot\":[0-9]*,\"pid\":$1[,}]" | grep -o '"slot":[0-9]*' | cut -d: -f2; }
slot=$(slot_of "$p1")
kill -9 "$p1"
respawned() { ! pids | grep -qx "$p1" && [ "$(nworkers)" -eq 4 ]; }
if wait_for respawned; then
    newpid=$(workers_json | grep -o "\"slot\":$slot,\"pid\":[0-9]*" | grep -o '[0-9]*$')
    echo "   slot $slot: pid $p1 -> $newpid"
    ok "respawned in the same slot"
else
    bad "no respawn"
fi
grep -E "exited on signal 9|was locked by|start worker process $newpid" "$log" | sed 's/^/   log: /'

step "reload: $demo -s reload -c $conf (SIGHUP through the pid file): a new generation; zone \"one\" keeps its data"
gen_before=$("$tool" stat --json --instance demo one | grep -o '"generation":[0-9]*' | head -1 | cut -d: -f2)
old_pids=$(pids | sort | tr '\n' ' ')
"$demo" -s reload -c "$conf" || bad "-s reload failed"
if wait_for sh -c "[ \"\$(curl -s $base/workers | grep -o '\"pid\":[0-9]*' | cut -d: -f2 | sort | tr '\n' ' ')\" != \"$old_pids\" ]" &&
   wait_for log_has "reload done"; then
    gen_after=$("$tool" stat --json --instance demo one | grep -o '"generation":[0-9]*' | head -1 | cut -d: -f2)
    echo "   workers before: $old_pids"
    echo "   workers after:  $(pids | sort | tr '\n' ' ')"
    echo "   zone one generation: $gen_before -> $gen_after"
    [ "$gen_after" = $((gen_before + 1)) ] && ok "zone kept (generation +1)" || bad "zone not kept"
else
    bad "reload did not happen"
fi
echo "   zone one's slab after the reload (size used/total cached requests failures):"
echo "     $("$tool" stat --instance demo one | grep -E '^ +[0-9]+ +[0-9]+/' | head -3 | tr -s ' ' | tr '\n' ';')"

step "graceful stop: $demo -s quit -c $conf (SIGQUIT)"
"$demo" -s quit -c "$conf" || bad "-s quit failed"
if wait_for sh -c "! kill -0 $master"; then
    ok "master exited"
else
    bad "master still running"
fi
left=$(pgrep -f "shmkit-demo -c $conf" | wc -l)
[ "$left" -eq 0 ] && ok "no process left behind" || bad "$left processes left"
master=

echo
if [ $fail = 0 ]; then
    echo "demo: every step worked (log kept in $log)"
else
    echo "demo: some steps FAILED (log in $log)"
fi
exit $fail
