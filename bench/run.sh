#!/usr/bin/env bash
# Durable earn throughput: the node over HTTP next to PostgreSQL (pgbench) on this machine.
#   bench/run.sh [SECONDS] [CLIENTS]      e.g. bench/run.sh 20 1,16,64
# Prints one line per run and a table of ratios. Builds in release mode first.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
clients="${2:-1,16,64}"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB"
cargo bench --workspace --bench http_load -- --seconds "$seconds" --clients "$clients" | tee "$out/node.txt"
DURATION="$seconds" CLIENTS="${clients//,/ }" bench/postgres/run.sh | tee "$out/pg.txt"

echo
printf '%-8s %12s %22s %26s %10s %10s\n' clients node_tps pg_earn_simple_tps pg_earn_double_entry_tps ratio_se ratio_de
# Field by name: `field FILE PREFIX CLIENTS KEY` prints KEY's value on the line that starts
# with PREFIX and has clients=CLIENTS.
field() {
  awk -v p="$2" -v c="clients=$3" -v k="$4" '
    index($0, p " ") == 1 { hit = 0; for (i = 1; i <= NF; i++) if ($i == c) hit = 1
      if (hit) for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) print a[2] } }' "$1"
}
IFS=',' read -ra cs <<< "$clients"
for c in "${cs[@]}"; do
  n=$(field "$out/node.txt" "node earn" "$c" tps)
  s=$(field "$out/pg.txt" "postgres earn_simple" "$c" tps)
  d=$(field "$out/pg.txt" "postgres earn_double_entry" "$c" tps)
  rs=$(awk -v n="${n:-0}" -v s="${s:-0}" 'BEGIN{ if (s>0) printf "%.1fx", n/s; else print "-" }')
  rd=$(awk -v n="${n:-0}" -v d="${d:-0}" 'BEGIN{ if (d>0) printf "%.1fx", n/d; else print "-" }')
  printf '%-8s %12s %22s %26s %10s %10s\n' "$c" "${n:--}" "${s:--}" "${d:--}" "$rs" "$rd"
done
