#!/usr/bin/env bash
# Measures two builds of the project side by side, alternating, in one run: the ledger alone,
# HTTP earns and the batch path with the node's own /healthz as the ceiling, and (optionally)
# one member with many lots beside the others. Absolute figures on a shared VM move 10-20 %
# between runs; compare within one run.
#
#   bench/side-by-side.sh BEFORE_DIR AFTER_DIR [ROUNDS]
#
# Each DIR is a checkout (e.g. `git worktree add --detach ../before <commit>`) with its own
# target directory; the release builds are made first. HEAVY_LOTS=N adds the heavy-member
# run (default 0: a build before the oldest-kept-earning fix takes minutes per 10k lots).
set -euo pipefail
before=$(cd "$1" && pwd)
after=$(cd "$2" && pwd)
rounds=${3:-2}
secs=${SECONDS_PER_RUN:-10}
heavy=${HEAVY_LOTS:-0}
for dir in "$before" "$after"; do
  (cd "$dir" && cargo build --release --locked --workspace --bins >&2 &&
    cargo bench --locked --workspace --bench ledger --bench http_load --no-run >&2)
done
for round in $(seq "$rounds"); do
  for dir in "$before" "$after"; do
    cd "$dir"
    echo "== $(git rev-parse --short HEAD) ($dir) round $round, $(date +%T), load $(cut -d' ' -f1 /proc/loadavg)"
    BENCH_DIR=${BENCH_DIR:-/tmp} cargo bench --locked --workspace --bench ledger 2>/dev/null |
      grep -E '^append batch= *4096|^replay'
    cargo bench --locked --workspace --bench http_load -- --seconds "$secs" --clients 64 \
      --batch-clients 4 --batch 500 --healthz 2>/dev/null | grep -E '^node'
    if ((heavy > 0)); then
      cargo bench --locked --workspace --bench http_load -- --seconds "$secs" --clients 64 \
        --batch-clients 0 --heavy-lots "$heavy" 2>/dev/null | grep -E '^node'
    fi
  done
done
