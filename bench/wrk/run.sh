#!/usr/bin/env bash
# Durable earns and the node's own GET /healthz driven by wrk (a load generator in C, much
# lighter than the benches' Rust one, which shares the machine's cores with the node): a fresh
# node on loopback, then `wrk` at CONNECTIONS connections for SECONDS_PER_RUN s on /healthz and
# on POST /v1/members/{m}/earn (bench/wrk/earn.lua: a new id per request, members spread over
# a million), then on the batch path, POST /v1/earns with BATCH earns per request at
# BATCH_CONNECTIONS connections (the same script with BATCH). Prints `wrk healthz connections=C tps=..`,
# `wrk earn connections=C tps=.. p50_ms=.. p99_ms=.. non2xx=N requests=R appended=A` and
# `wrk earn_batch connections=C batch=B tps=<earns/s> p50_ms=.. p99_ms=.. non2xx=N requests=R
# appended=A` (latency per request): A, the entries the run appended, is at least R earns (and
# at most the earns of C more requests, the answers wrk did not wait for) when no earn was a
# replay.
#
#   bench/wrk/run.sh [BIN]     BIN: a loyalty-node binary (default: target/release/loyalty-node)
#
# Two builds side by side: call it for each binary in turn, several rounds, in one run.
# Environment: SECONDS_PER_RUN (15), CONNECTIONS (64), BATCH_CONNECTIONS (4), BATCH (500),
# BENCH_DIR (where the node's data goes; default /tmp). wrk is installed with apt-get when missing (as root).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bin="${1:-$here/../../target/release/loyalty-node}"
secs="${SECONDS_PER_RUN:-15}"
conns="${CONNECTIONS:-64}"
bconns="${BATCH_CONNECTIONS:-4}"
batch="${BATCH:-500}"
die() { echo "bench/wrk/run.sh: $*" >&2; exit 1; }
[[ -x "$bin" ]] || die "no loyalty-node binary at $bin (cargo build --release first)"
if ! command -v wrk >/dev/null; then
  [[ $EUID -eq 0 ]] && command -v apt-get >/dev/null || die "wrk is missing; install it (apt-get install wrk)"
  echo "wrk not found; installing it with apt-get" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2 ||
    { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk >&2; }
fi
data="$(mktemp -d "${BENCH_DIR:-/tmp}/wrk.XXXXXX")"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
pid=""
trap '[[ -n "$pid" ]] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$data"' EXIT
key="$("$bin" init --data "$data/node" --brand wrk --listen "127.0.0.1:$port" 2>&1 |
  sed -n 's/.*admin API key (shown once, stored hashed): //p')"
[[ -n "$key" ]] || die "loyalty-node init printed no admin key"
RUST_LOG=warn "$bin" run --data "$data/node" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break
  sleep 0.1
done
curl -sf "http://127.0.0.1:$port/readyz" >/dev/null || die "the node did not become ready"
# `ms VALUE`: wrk's latency (e.g. 2.88ms, 950.00us, 1.02s) in milliseconds.
ms() { awk -v v="$1" 'BEGIN{ n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /[0-9]s$/) n *= 1000; printf "%.2f", n }'; }
h="$(wrk -t2 -c"$conns" -d"${secs}s" "http://127.0.0.1:$port/healthz")"
echo "wrk healthz connections=$conns tps=$(sed -n 's/Requests\/sec: *//p' <<< "$h")"
# `size`: the log's size, from the receipt of one more earn (a new id each time).
size() {
  curl -sf -X POST -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
    -d "{\"id\":\"wrk-size-$$-$1\",\"points\":1}" "http://127.0.0.1:$port/v1/members/last/earn" |
    sed -n 's/.*"index":\([0-9]*\).*/\1/p'
}
# `grew FROM TO`: the entries appended between two `size` earns (`?` when one failed).
grew() { [[ -n "$1" && -n "$2" ]] && echo "$(( $2 - $1 - 1 ))" || echo "?"; }
# `report NAME OUTPUT EARNS_PER_REQUEST APPENDED [FIELDS]`: one line of wrk's figures.
report() {
  local non2xx
  non2xx="$(sed -n 's/.*Non-2xx or 3xx responses: *//p' <<< "$2")"
  echo "wrk $1 $5tps=$(awk -v k="$3" '/Requests\/sec:/ {printf "%.2f", $2 * k}' <<< "$2")" \
    "p50_ms=$(ms "$(awk '$1 == "50%" {print $2}' <<< "$2")")" \
    "p99_ms=$(ms "$(awk '$1 == "99%" {print $2}' <<< "$2")")" "non2xx=${non2xx:-0}" \
    "requests=$(awk '/requests in/ {print $1}' <<< "$2")" "appended=$4"
}
s0="$(size 0)"
e="$(KEY="$key" TAG="w$$-$RANDOM" BATCH=0 wrk -t2 -c"$conns" -d"${secs}s" --latency -s "$here/earn.lua" \
  "http://127.0.0.1:$port")"
s1="$(size 1)"
report earn "$e" 1 "$(grew "$s0" "$s1")" "connections=$conns "
b="$(KEY="$key" TAG="b$$-$RANDOM" BATCH="$batch" wrk -t2 -c"$bconns" -d"${secs}s" --latency \
  -s "$here/earn.lua" "http://127.0.0.1:$port")"
s2="$(size 2)"
report earn_batch "$b" "$batch" "$(grew "$s1" "$s2")" "connections=$bconns batch=$batch "
