#!/usr/bin/env bash
# Runs every cargo-fuzz target for a fixed number of executions, one after another, and prints
# executions, time and result per target. See fuzz/README.md.
#
#   fuzz/run.sh                 # every target, 1,000,000 executions each
#   RUNS=100000 fuzz/run.sh tiles checkpoint
#
# Environment:
#   RUNS            executions per target (default 1000000)
#   JOBS            cargo build jobs (default 1: the machine is shared)
#   SANITIZER       address | none (default none: the project is safe Rust; panics, overflow
#                   and failed assertions are what the targets look for, and debug assertions
#                   are on). `address` also works, at about half the speed.
#   ROCKSDB_LIB_DIR a directory with a prebuilt librocksdb.a (built by librocksdb-sys with the
#                   lz4 feature). Default: the first one found in this checkout's target*/
#                   (any normal build leaves one) or, in a git worktree, the main checkout's;
#                   when there is none, RocksDB is compiled from source (C++, 12+ minutes on 2
#                   cores). With one, ROCKSDB_STATIC=1 is set and fuzz/build.rs links the C++
#                   runtime. LZ4 always comes from lz4-sys.
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly compiler, or stable with
# RUSTC_BOOTSTRAP=1 (set here when unset).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
runs="${RUNS:-1000000}"
export CARGO_BUILD_JOBS="${JOBS:-1}"
sanitizer="${SANITIZER:-none}"
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(entry_decode checkpoint tiles peer_request request_bodies)
fi
export RUSTC_BOOTSTRAP="${RUSTC_BOOTSTRAP:-1}"

if [ -z "${ROCKSDB_LIB_DIR:-}" ]; then
    # This checkout's own normal build or, in a git worktree, the main checkout's.
    main="$(dirname "$(git -C "$root" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || echo "$root/.git")")"
    for lib in "$root"/target*/*/build/librocksdb-sys-*/out/librocksdb.a \
        "$main"/target*/*/build/librocksdb-sys-*/out/librocksdb.a; do
        if [ -f "$lib" ]; then
            export ROCKSDB_LIB_DIR="$(dirname "$lib")"
            break
        fi
    done
fi
if [ -n "${ROCKSDB_LIB_DIR:-}" ]; then
    export ROCKSDB_STATIC=1
    echo "RocksDB: prebuilt $ROCKSDB_LIB_DIR/librocksdb.a"
else
    echo "RocksDB: no prebuilt library found; compiling it from source"
fi

cd "$root"
cargo fuzz build -O -a -s "$sanitizer" --fuzz-dir "$here"

status=0
for t in "${targets[@]}"; do
    # libFuzzer adds what it finds to the first corpus directory: a scratch copy, so the
    # committed seeds in corpus/<target> stay as seeds.py wrote them.
    work="$here/work/$t"
    mkdir -p "$work" "$here/artifacts/$t"
    log="$here/work/$t.log"
    start=$(date +%s)
    if cargo fuzz run -O -a -s "$sanitizer" --fuzz-dir "$here" "$t" "$work" "$here/corpus/$t" -- \
        -runs="$runs" -print_final_stats=1 -artifact_prefix="$here/artifacts/$t/" >"$log" 2>&1; then
        result=ok
    else
        result="CRASH (see $log and $here/artifacts/$t/)"
        status=1
    fi
    secs=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    printf '%-16s executions %-10s %6ss  %s\n' "$t" "$execs" "$secs" "$result"
done
exit $status
