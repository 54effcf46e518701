#!/usr/bin/env bash
# bench/nchan/smoke.sh [CLIENT]: the pub/sub load client against the nchan
# baseline, briefly, in every mode. Runs the client's --self-test, starts
# nchan (bench/nchan/nchan.sh), then for each mode 10 subscribers on 2
# channels get 200 messages each at 400 messages/s, far below what nchan
# loses messages at: fails if a run reports an error, delivers nothing or
# loses a message. Also the templates (nchan's raw stream and raw long-poll,
# '~text~\n'), 16 KiB messages, two client processes and --server-pids.
# CLIENT defaults to build/rel/pubsub-client (make pubsub-client).
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
client=${1:-$root/build/rel/pubsub-client}
[ -x "$client" ] || { echo "smoke: no client at $client (make pubsub-client)" >&2; exit 1; }

"$client" --self-test || { echo "smoke: the client's self-test failed" >&2; exit 1; }

out=$("$root/bench/nchan/nchan.sh" start) || exit 1
eval "${out#NCHAN }" # port= pid= prefix=
trap '"$root/bench/nchan/nchan.sh" stop "$prefix"' EXIT
pids=$("$root/bench/nchan/nchan.sh" pids "$prefix")
echo "smoke: nchan on 127.0.0.1:$port, master $pid (pids $pids)"

bad=0
# run NAME ARGS...: one client run; checks its RESULT line
run() {
    local name=$1
    shift
    local res rc
    res=$(timeout 120 "$client" -q -p "$port" --server-pids "$pids" "$@")
    rc=$?
    local delivered lost errors
    delivered=$(sed -n 's/.* delivered=\([0-9]*\).*/\1/p' <<<"$res")
    lost=$(sed -n 's/.* lost=\([0-9]*\).*/\1/p' <<<"$res")
    errors=$(sed -n 's/.* errors=\([0-9]*\).*/\1/p' <<<"$res")
    if [ $rc -ne 0 ] || [ -z "$delivered" ] || [ "$delivered" -eq 0 ] || [ "$lost" -ne 0 ]; then
        echo "smoke: FAIL $name (exit $rc): ${res:-no RESULT line}" >&2
        bad=1
    else
        echo "smoke: ok   $name: delivered=$delivered lost=$lost errors=$errors"
    fi
}

common=(-c 2 -s 10 -P 2 -n 200 -r 400)
for mode in eventsource longpoll stream websocket; do
    run "$mode" -m "$mode" "${common[@]}"
    run "$mode 16KiB" -m "$mode" "${common[@]}" -b 16384
done
run "raw stream template" -m stream --sub-url 'http://127.0.0.1:%PORT%/raw/%CH%' -t '~text~\n' "${common[@]}"
run "raw long-poll template" -m longpoll --sub-url 'http://127.0.0.1:%PORT%/lpraw/%CH%' -t '~text~\n' "${common[@]}"
run "two processes" -m websocket "${common[@]}" --conns-per-proc 6

[ $bad -eq 0 ] && echo "smoke: passed" || echo "smoke: FAILED" >&2
exit $bad
