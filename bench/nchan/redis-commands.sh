#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-2-Clause
# bench/nchan/redis-commands.sh REDIS_PORT [N]: Redis commands per publish of
# nchan in Redis mode (the baseline of bench_redis's
# redis.commands_per_publish). Starts one nchan nginx (nchan.sh -r) on the
# redis-server listening on 127.0.0.1:REDIS_PORT, POSTs N messages (default
# 200) to one channel over one keep-alive connection, and prints
#     NCHAN_COMMANDS_PER_PUBLISH <calls in INFO commandstats / N>
# counting every command the server ran meanwhile (nothing else talks to it).
set -u
here=$(cd "$(dirname "$0")" && pwd)
port=${1:?usage: redis-commands.sh REDIS_PORT [N]}
n=${2:-200}
calls() { redis-cli -p "$port" info commandstats | grep -o 'calls=[0-9]*' | cut -d= -f2 | paste -sd+ | bc; }
out=$("$here/nchan.sh" start -w 1 -r "redis://127.0.0.1:$port") || exit 1
np=$(echo "$out" | sed 's/.*port=\([0-9]*\).*/\1/')
prefix=$(echo "$out" | sed 's/.*prefix=//')
urls=()
# one warm-up publish: the channel and nchan's scripts exist before counting
curl -s -o /dev/null -X POST --data-binary hello "http://127.0.0.1:$np/pub?id=cmdcount"
for _ in $(seq "$n"); do urls+=("http://127.0.0.1:$np/pub?id=cmdcount"); done
c0=$(calls)
curl -s -X POST --data-binary hello "${urls[@]}" >/dev/null
c1=$(calls)
"$here/nchan.sh" stop "$prefix"
# the two INFO calls of the counting itself are not nchan's
echo "NCHAN_COMMANDS_PER_PUBLISH $(echo "scale=3; ($c1 - $c0 - 1) / $n" | bc)"
