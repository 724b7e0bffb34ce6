#!/usr/bin/env bash
# The performance report (README "Performance report"): one command that measures, on the
# machine at hand, and prints side by side:
#   - durable earns through HTTP, one earn per request, at 1/16/64 clients (throughput, p50/p99);
#   - the batch path (POST /v1/earns, 500 earns a request);
#   - the same earn workload on PostgreSQL (pgbench, bench/postgres/), with the ratios;
#   - cross-brand redemptions per second between two nodes;
#   - auditors and mirrors (issue 16, a 10M-entry log): `loyalty verify` entries/s (in memory
#     and with --state), a resumed audit after 10,000 new entries, mirror catch-up entries/s,
#     and a node's own earns while its mirror catches up beside those without;
#   - the cost of a standby: the same earns on a single node, on a primary with its in-sync
#     standby (etcd on loopback), and on that primary alone;
#   - a node on a big log (`--bench scale`, default 100M entries over 10M members): start-up,
#     memory once ready and after 10 minutes of mixed load, HTTP earns and the batch path on
#     that log (beside the same on an empty log), bytes on disk per entry;
#   - one member with 100,000 lots: the other members' earn latency beside a run without;
#   - the node's own /healthz (the HTTP ceiling), and earns, the batch path and /healthz again
#     driven by wrk (bench/wrk/run.sh; installed with apt-get when missing);
#   - the ledger alone (append/commit/checkpoint by batch size, reopen, replay).
#
#   bench/run.sh            full report (~30 min on 2 cores, after the release build)
#   bench/run.sh --quick    short runs and small logs, to check that everything works (~5 min)
#
# Environment: SECONDS_PER_RUN (15), CLIENTS (1,16,64), BATCH_CLIENTS (1,4,16),
# STARTUP_ENTRIES (100000000), MEMORY_MEMBERS (10000000), LOAD_SECONDS (600), HEAVY_LOTS (100000),
# CATCHUP_ENTRIES (10000000), CATCHUP_CLIENTS (16),
# BENCH_DIR (where the logs are written; default: a temp dir under target/), SKIP_PG=1.
# Builds in release mode first (CARGO_TARGET_DIR is honoured). PostgreSQL 15 is installed with
# apt-get when missing (see bench/postgres/README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=0
[[ "${1:-}" == "--quick" ]] && quick=1
if ((quick)); then
  : "${SECONDS_PER_RUN:=4}" "${STARTUP_ENTRIES:=200000}" "${MEMORY_MEMBERS:=100000}" "${CATCHUP_ENTRIES:=200000}"
  : "${LOAD_SECONDS:=10}" "${HEAVY_LOTS:=10000}"
fi
secs="${SECONDS_PER_RUN:-15}"
clients="${CLIENTS:-1,16,64}"
batch_clients="${BATCH_CLIENTS:-1,4,16}"
startup_entries="${STARTUP_ENTRIES:-100000000}"
memory_members="${MEMORY_MEMBERS:-10000000}"
load_seconds="${LOAD_SECONDS:-600}"
heavy_lots="${HEAVY_LOTS:-100000}"
catchup_entries="${CATCHUP_ENTRIES:-10000000}"
catchup_clients="${CATCHUP_CLIENTS:-16}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
mkdir -p "$target"
export BENCH_DIR="${BENCH_DIR:-$(mktemp -d "$target/bench.XXXXXX")}"
out="$(mktemp -d)"
trap 'rm -rf "$out"; [[ "$BENCH_DIR" == "$target"/bench.* ]] && rm -rf "$BENCH_DIR"' EXIT

say() { printf '\n== %s\n' "$*" >&2; }

machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB RAM, $(df -h "$BENCH_DIR" | awk 'NR==2{print $1}')"
say "building (release)"
cargo build --release --locked --workspace --bins >&2
cargo bench --locked --workspace --no-run >&2

say "ledger alone"
cargo bench --locked --workspace --bench ledger -- $( ((quick)) && echo --quick) | tee "$out/ledger.txt" >&2
say "HTTP earns, one per request, and the batch path"
cargo bench --locked --workspace --bench http_load -- --seconds "$secs" --clients "$clients" \
  --batch-clients "$batch_clients" --batch 500 --healthz | tee "$out/node.txt" >&2
say "HTTP earns and /healthz driven by wrk (bench/wrk/run.sh)"
SECONDS_PER_RUN="$secs" bench/wrk/run.sh "$target/release/loyalty-node" | tee "$out/wrk.txt" >&2
say "one member with $heavy_lots lots beside the others"
cargo bench --locked --workspace --bench http_load -- --seconds "$secs" --clients 64 \
  --batch-clients 0 --heavy-lots "$heavy_lots" | tee "$out/heavy.txt" >&2
say "cross-brand redemptions"
cargo bench --locked --workspace --bench redemptions -- --seconds "$secs" --clients 1,16 \
  | tee "$out/red.txt" >&2
say "the cost of a standby (three etcd members, a primary and its standby)"
cargo bench --locked --workspace --bench replication -- --seconds "$secs" --clients "$clients" \
  | tee "$out/repl.txt" >&2
say "loyalty verify, resumed audits, mirror catch-up and own earns during it ($catchup_entries entries)"
cargo bench --locked --workspace --bench catchup -- --entries "$catchup_entries" --resume-entries 10000 \
  --clients "$catchup_clients" --seconds "$secs" | tee "$out/catchup.txt" >&2
say "start-up with $startup_entries entries, memory with $memory_members members"
cargo bench --locked --workspace --bench scale -- --entries "$startup_entries" --members "$memory_members" \
  --seconds "$secs" --load-seconds "$load_seconds" | tee "$out/scale.txt" >&2
if [[ "${SKIP_PG:-0}" != 1 ]]; then
  say "PostgreSQL, the same earn workload"
  DURATION="$secs" CLIENTS="${clients//,/ }" bench/postgres/run.sh | tee "$out/pg.txt" >&2
  DURATION="$secs" CLIENTS="${batch_clients//,/ }" VARIANTS=earn_double_entry_batch bench/postgres/run.sh \
    | tee -a "$out/pg.txt" >&2
else
  : > "$out/pg.txt"
fi

# `field FILE PREFIX KEY [CLIENTS]`: KEY's value on the first line starting with PREFIX (and
# having clients=CLIENTS when given).
field() {
  awk -v p="$2" -v k="$3" -v c="${4:+clients=$4}" '
    index($0, p " ") == 1 { hit = (c == ""); for (i = 1; i <= NF; i++) if ($i == c) hit = 1
      if (hit) { for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) { print a[2]; exit } } } }' "$1"
}
ratio() { awk -v n="${1:-0}" -v d="${2:-0}" 'BEGIN{ if (d > 0) printf "%.1fx", n / d; else print "-" }'; }
num() { awk -v x="${1:-}" 'BEGIN{ if (x == "") print "-"; else { s = sprintf("%.0f", x); r = ""; while (length(s) > 3) { r = "," substr(s, length(s) - 2) r; s = substr(s, 1, length(s) - 3) } print s r } }'; }

echo
echo "Performance report, $(date -u +%Y-%m-%d), $machine"
echo
echo "Durable earns through HTTP, one earn per request (PostgreSQL: one earn per transaction)"
printf '%-8s %-26s %-22s %-26s %-10s %-10s\n' clients "node earns/s (p50/p99 ms)" "PG earn_simple/s" "PG earn_double_entry/s" "÷ simple" "÷ double"
IFS=',' read -ra cs <<< "$clients"
for c in "${cs[@]}"; do
  n=$(field "$out/node.txt" "node earn" tps "$c")
  s=$(field "$out/pg.txt" "postgres earn_simple" tps "$c")
  d=$(field "$out/pg.txt" "postgres earn_double_entry" tps "$c")
  lat="$(field "$out/node.txt" "node earn" p50_ms "$c")/$(field "$out/node.txt" "node earn" p99_ms "$c")"
  printf '%-8s %-26s %-22s %-26s %-10s %-10s\n' "$c" "$(num "$n") ($lat)" "$(num "$s")" "$(num "$d")" "$(ratio "$n" "$s")" "$(ratio "$n" "$d")"
done
best_s=$(awk '/^postgres earn_simple /{for(i=1;i<=NF;i++){split($i,a,"=");if(a[1]=="tps"&&a[2]>m)m=a[2]}}END{print m+0}' "$out/pg.txt")
best_d=$(awk '/^postgres earn_double_entry /{for(i=1;i<=NF;i++){split($i,a,"=");if(a[1]=="tps"&&a[2]>m)m=a[2]}}END{print m+0}' "$out/pg.txt")
echo
echo "The batch path: 500 earns a request (node: POST /v1/earns; PostgreSQL: 500 double-entry earns a transaction)"
printf '%-8s %-16s %-20s %-22s %-12s %-24s %-24s\n' clients "node earns/s" "node p50/p99 ms" "PG batch earns/s" "÷ PG batch" "÷ best PG earn_simple" "÷ best PG double-entry"
IFS=',' read -ra bcs <<< "$batch_clients"
for c in "${bcs[@]}"; do
  n=$(field "$out/node.txt" "node earn_batch" tps "$c")
  b=$(field "$out/pg.txt" "postgres earn_double_entry_batch" tps "$c")
  lat="$(field "$out/node.txt" "node earn_batch" p50_ms "$c")/$(field "$out/node.txt" "node earn_batch" p99_ms "$c")"
  printf '%-8s %-16s %-20s %-22s %-12s %-24s %-24s\n' "$c" "$(num "$n")" "$lat" "$(num "$b")" "$(ratio "$n" "$b")" "$(ratio "$n" "$best_s")" "$(ratio "$n" "$best_d")"
done
echo
echo "Cross-brand redemptions (authorise, quote, prepare, commit; two nodes)"
for c in 1 16; do
  printf '  %2s clients: %s redemptions/s, p50 %s ms, p99 %s ms\n' "$c" \
    "$(num "$(field "$out/red.txt" "node redemptions" per_s "$c")")" \
    "$(field "$out/red.txt" "node redemptions" p50_ms "$c")" "$(field "$out/red.txt" "node redemptions" p99_ms "$c")"
done
echo
echo "A standby: durable earns, one per request (single node; primary with its in-sync standby; the same primary alone)"
printf '%-8s %-26s %-26s %-10s %-26s\n' clients "single earns/s (p50/p99)" "with standby (p50/p99)" "÷ single" "alone under etcd (p50/p99)"
for c in "${cs[@]}"; do
  one=$(field "$out/repl.txt" "node replication mode=single" tps "$c")
  two=$(field "$out/repl.txt" "node replication mode=standby" tps "$c")
  alone=$(field "$out/repl.txt" "node replication mode=alone" tps "$c")
  l1="$(field "$out/repl.txt" "node replication mode=single" p50_ms "$c")/$(field "$out/repl.txt" "node replication mode=single" p99_ms "$c")"
  l2="$(field "$out/repl.txt" "node replication mode=standby" p50_ms "$c")/$(field "$out/repl.txt" "node replication mode=standby" p99_ms "$c")"
  l3="$(field "$out/repl.txt" "node replication mode=alone" p50_ms "$c")/$(field "$out/repl.txt" "node replication mode=alone" p99_ms "$c")"
  printf '%-8s %-26s %-26s %-10s %-26s\n' "$c" "$(num "$one") ($l1)" "$(num "$two") ($l2)" "$(ratio "$two" "$one")" "$(num "$alone") ($l3)"
done
echo
echo "Logs"
printf '  loyalty verify of %s entries: %s entries/s (replay in memory); with --state (replay into RocksDB): %s entries/s\n' \
  "$(num "$(field "$out/catchup.txt" verify entries)")" "$(num "$(field "$out/catchup.txt" verify entries_per_s)")" \
  "$(num "$(field "$out/catchup.txt" verify_state entries_per_s)")"
printf '  resumed audit (--state) after 10,000 new entries: %s s; with nothing new: %s s\n' \
  "$(awk '/^resume new=10000 /{for(i=1;i<=NF;i++){split($i,a,"=");if(a[1]=="seconds")print a[2]}}' "$out/catchup.txt")" \
  "$(awk '/^resume new=0 /{for(i=1;i<=NF;i++){split($i,a,"=");if(a[1]=="seconds")print a[2]}}' "$out/catchup.txt")"
printf '  mirror catch-up of %s entries: %s entries/s\n' "$(num "$(field "$out/catchup.txt" catchup entries)")" "$(num "$(field "$out/catchup.txt" catchup entries_per_s)")"
printf '  own earns at %s clients while the mirror catches up: %s/s, without: %s/s (ratio %s; the catch-up meanwhile: %s entries/s)\n' \
  "$catchup_clients" "$(num "$(field "$out/catchup.txt" own_earns during_catchup_tps)")" "$(num "$(field "$out/catchup.txt" own_earns baseline_tps)")" \
  "$(field "$out/catchup.txt" own_earns ratio)" "$(num "$(field "$out/catchup.txt" own_earns catchup_entries_per_s)")"
printf '  start-up with %s entries, %s members: %s s to /readyz (log written at %s entries/s)\n' "$(num "$startup_entries")" "$(num "$memory_members")" \
  "$(field "$out/scale.txt" scale startup_s)" \
  "$(num "$(awk -v e="$startup_entries" -v s="$(field "$out/scale.txt" scale write_s)" 'BEGIN{ if (s > 0) print e / s }')")"
printf '  memory: %s MiB resident once ready (peak %s MiB), %s MiB after %s s of mixed load (peak %s MiB)\n' \
  "$(field "$out/scale.txt" scale rss_mib)" "$(field "$out/scale.txt" scale hwm_mib)" \
  "$(field "$out/scale.txt" scale rss_after_load_mib)" "$(field "$out/scale.txt" scale load_s)" "$(field "$out/scale.txt" scale hwm_after_load_mib)"
printf '  disk: %s MiB, %s bytes per entry\n' "$(field "$out/scale.txt" scale disk_mib)" "$(field "$out/scale.txt" scale bytes_per_entry)"
printf '  measured once RocksDB had no compaction left (it took %s s after the writing)\n' "$(field "$out/scale.txt" scale settle_s)"
big=$(field "$out/scale.txt" scale earn_tps)
empty=$(field "$out/scale.txt" scale empty_earn_tps)
printf '  HTTP earns at 64 clients on that log: %s/s (p50/p99 %s/%s ms); on an empty log in the same run %s/s: %s\n' "$(num "$big")" \
  "$(field "$out/scale.txt" scale earn_p50_ms)" "$(field "$out/scale.txt" scale earn_p99_ms)" "$(num "$empty")" "$(ratio "$big" "$empty")"
big=$(field "$out/scale.txt" scale batch_tps)
empty=$(field "$out/scale.txt" scale empty_batch_tps)
printf '  the batch path on that log (4 clients, 500 earns a request): %s earns/s; on the empty log %s/s: %s\n' \
  "$(num "$big")" "$(num "$empty")" "$(ratio "$big" "$empty")"
big=$(field "$out/scale.txt" scale wrk_earn_tps)
empty=$(field "$out/scale.txt" scale empty_wrk_earn_tps)
printf '  the same with wrk: earns at 64 connections %s/s, on the empty log %s/s: %s;' "$(num "$big")" "$(num "$empty")" "$(ratio "$big" "$empty")"
big=$(field "$out/scale.txt" scale wrk_batch_tps)
empty=$(field "$out/scale.txt" scale empty_wrk_batch_tps)
printf ' the batch path %s earns/s, on the empty log %s/s: %s\n' "$(num "$big")" "$(num "$empty")" "$(ratio "$big" "$empty")"
echo
echo "One member with $(num "$heavy_lots") lots (64 clients earning for other members, one for it)"
printf '  other members: %s earns/s, p50 %s ms, p99 %s ms; without it: %s earns/s, p99 %s ms (p99 ratio %s)\n' \
  "$(num "$(field "$out/heavy.txt" "node earn" tps 64)")" "$(field "$out/heavy.txt" "node earn" p50_ms 64)" "$(field "$out/heavy.txt" "node earn" p99_ms 64)" \
  "$(num "$(field "$out/node.txt" "node earn" tps 64)")" "$(field "$out/node.txt" "node earn" p99_ms 64)" \
  "$(ratio "$(field "$out/heavy.txt" "node earn" p99_ms 64)" "$(field "$out/node.txt" "node earn" p99_ms 64)")"
echo
echo "HTTP ceiling: the node's own GET /healthz"
for c in "${cs[@]}"; do
  h=$(field "$out/node.txt" "node healthz" tps "$c")
  n=$(field "$out/node.txt" "node earn" tps "$c")
  printf '  %3s clients: %s req/s; durable earns are %s of it\n' "$c" "$(num "$h")" "$(awk -v n="${n:-0}" -v h="${h:-0}" 'BEGIN{ if (h > 0) printf "%.0f %%", 100 * n / h; else print "-" }')"
done
w_h=$(field "$out/wrk.txt" "wrk healthz" tps)
w_e=$(field "$out/wrk.txt" "wrk earn" tps)
printf '  with wrk at 64 connections (a lighter load generator): /healthz %s req/s, durable earns %s/s (p50/p99 %s/%s ms, %s refused; %s answered, %s appended)\n' \
  "$(num "$w_h")" "$(num "$w_e")" "$(field "$out/wrk.txt" "wrk earn" p50_ms)" "$(field "$out/wrk.txt" "wrk earn" p99_ms)" \
  "$(field "$out/wrk.txt" "wrk earn" non2xx)" "$(num "$(field "$out/wrk.txt" "wrk earn" requests)")" \
  "$(num "$(field "$out/wrk.txt" "wrk earn" appended)")"
w_b=$(field "$out/wrk.txt" "wrk earn_batch" tps)
printf '  the batch path with wrk (%s connections x %s earns): %s earns/s (p50/p99 per request %s/%s ms, %s refused; %s requests answered, %s earns appended)\n' \
  "$(field "$out/wrk.txt" "wrk earn_batch" connections)" "$(field "$out/wrk.txt" "wrk earn_batch" batch)" "$(num "$w_b")" \
  "$(field "$out/wrk.txt" "wrk earn_batch" p50_ms)" "$(field "$out/wrk.txt" "wrk earn_batch" p99_ms)" \
  "$(field "$out/wrk.txt" "wrk earn_batch" non2xx)" "$(num "$(field "$out/wrk.txt" "wrk earn_batch" requests)")" \
  "$(num "$(field "$out/wrk.txt" "wrk earn_batch" appended)")"
echo
echo "Ledger alone"
grep -E '^(append|open|replay|verify_replay)' "$out/ledger.txt" | sed 's/^/  /'
