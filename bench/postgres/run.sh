#!/usr/bin/env bash
# PostgreSQL side of the earn benchmark: durable double-entry "earn" transactions with pgbench.
#
#   bench/postgres/run.sh [CLIENTS...]        e.g.  bench/postgres/run.sh 1 16 64
#
# Creates a throwaway PostgreSQL 15 cluster in a fresh temp directory, serves it on
# 127.0.0.1:$PORT only, runs every variant at every client count, prints one summary line
# per run on stdout (progress goes to stderr), then stops the server and deletes the
# directory. It touches nothing else. See README.md for what is measured.
#
# Environment (all optional):
#   CLIENTS="1 16 64"       client counts (command-line arguments take precedence)
#   DURATION=20             seconds per pgbench run
#   VARIANTS="earn_simple earn_double_entry"   (also available: earn_double_entry_sharded,
#                           earn_double_entry_batch: 500 earns a transaction, the batch path)
#   MEMBERS=1000000         pre-existing members; each earn picks one uniformly at random
#   PORT=55432              loopback TCP port of the throwaway server
#   THREADS=$(nproc)        pgbench worker threads (capped at the client count)
#   SHARED_BUFFERS=1GB
#   PGBIN=/usr/lib/postgresql/15/bin
#   BENCH_TMP=${TMPDIR:-/tmp}  parent of the temp dir; must be on the disk you want to measure
#   KEEP=0                  1: keep the temp dir (server log, pgbench logs) instead of deleting it
#
# Needs root only to install PostgreSQL if missing and to run the server as user postgres;
# as a non-root user it runs the server as that user.
set -euo pipefail

die() { echo "run.sh: error: $*" >&2; exit 1; }
info() { echo "run.sh: $*" >&2; }

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

# ---------------------------------------------------------------- parameters
if [[ $# -gt 0 ]]; then CLIENTS="$*"; fi
CLIENTS=${CLIENTS:-"1 16 64"}
DURATION=${DURATION:-20}
VARIANTS=${VARIANTS:-"earn_simple earn_double_entry"}
MEMBERS=${MEMBERS:-1000000}
PORT=${PORT:-55432}
THREADS=${THREADS:-$(nproc)}
SHARED_BUFFERS=${SHARED_BUFFERS:-1GB}
DEFAULT_PGBIN=/usr/lib/postgresql/15/bin
PGBIN=${PGBIN:-$DEFAULT_PGBIN}
BENCH_TMP=${BENCH_TMP:-${TMPDIR:-/tmp}}
KEEP=${KEEP:-0}

is_uint() { [[ $1 =~ ^[1-9][0-9]*$ ]]; }
max_clients=0
for c in $CLIENTS; do
    is_uint "$c" || die "client count '$c' is not a positive integer"
    (( c > 1000 )) && die "client count $c is more than 1000"
    (( c > max_clients )) && max_clients=$c
done
(( max_clients > 0 )) || die "no client counts given"
for v in DURATION MEMBERS PORT THREADS; do
    is_uint "${!v}" || die "$v='${!v}' is not a positive integer"
done
(( PORT >= 1024 && PORT <= 65535 )) || die "PORT=$PORT is not in 1024..65535"
for v in $VARIANTS; do
    [[ -f "$SCRIPT_DIR/$v.sql" ]] || die "unknown variant '$v' (no $SCRIPT_DIR/$v.sql)"
done
[[ -f "$SCRIPT_DIR/schema.sql" ]] || die "missing $SCRIPT_DIR/schema.sql"
[[ -d "$BENCH_TMP" ]] || die "BENCH_TMP=$BENCH_TMP is not a directory"
for tool in awk sort mktemp timeout; do
    command -v "$tool" >/dev/null || die "needs $tool"
done

# ---------------------------------------------------------------- PostgreSQL binaries
need_bins() {
    local b
    for b in initdb pg_ctl postgres psql pgbench; do
        [[ -x "$PGBIN/$b" ]] || return 1
    done
}
if ! need_bins; then
    [[ "$PGBIN" == "$DEFAULT_PGBIN" ]] || die "PGBIN=$PGBIN lacks initdb/pg_ctl/postgres/psql/pgbench"
    [[ $EUID -eq 0 ]] || die "PostgreSQL 15 is not installed in $PGBIN; run as root to install it"
    command -v apt-get >/dev/null || die "PostgreSQL 15 is missing and apt-get is not available"
    info "PostgreSQL 15 server not found in $PGBIN; installing package 'postgresql' with apt-get"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >&2
    need_bins || die "apt-get installed 'postgresql' but $PGBIN still lacks the server/pgbench binaries"
fi
pg_version=$("$PGBIN/postgres" --version)

# Run server-side commands as user postgres when we are root (the server refuses to run as root).
if [[ $EUID -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || die "running as root but there is no 'postgres' user to run the server"
    command -v runuser >/dev/null || die "needs runuser to start the server as user postgres"
    AS_PG=(runuser -u postgres --)
    PG_OWNER=postgres
else
    AS_PG=()
    PG_OWNER=$(id -un)
fi

# ---------------------------------------------------------------- temp cluster + cleanup
# Refuse to share the port with anything (a previous run's server is cleaned up by its trap).
if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
    die "something already listens on 127.0.0.1:$PORT; set PORT to a free port"
fi

TMP=$(mktemp -d "$BENCH_TMP/pg-earn-bench.XXXXXX")
DATA="$TMP/data"
SOCK="$TMP/sock"
LOGS="$TMP/logs"
SERVER_LOG="$TMP/server.log"
server_started=0

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if (( server_started )); then
        info "stopping server"
        "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$DATA" -m fast -t 60 -w stop >/dev/null 2>&1 \
            || "${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$DATA" -m immediate -t 30 -w stop >/dev/null 2>&1 \
            || info "warning: could not stop the server of $DATA"
    fi
    if [[ "$KEEP" == 1 ]]; then
        info "kept $TMP"
    else
        rm -rf -- "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

cd /   # so that commands run as user postgres never start in a directory it cannot read
chmod 755 "$TMP"
mkdir -p "$DATA" "$SOCK" "$LOGS"
chown "$PG_OWNER" "$DATA" "$SOCK"
touch "$SERVER_LOG" && chown "$PG_OWNER" "$SERVER_LOG"

fstype=$(stat -f -c %T "$TMP")
case "$fstype" in
    tmpfs|ramfs|overlay*) info "WARNING: $TMP is on $fstype: fsync may not reach a disk; set BENCH_TMP" ;;
esac

# Two cores are easily saturated by anything else (a compile, the other side of the comparison):
# say so, because the figures would then be low.
load1=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo 0)
if awk -v l="$load1" 'BEGIN { exit !(l > 1.0) }'; then
    info "WARNING: 1-minute load average is $load1 before starting; the machine is busy and the figures will be low"
fi
info "$pg_version; cluster in $TMP ($fstype); clients: $CLIENTS; ${DURATION}s per run; variants: $VARIANTS"
timeout 120 "${AS_PG[@]}" "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C --no-sync \
    >"$TMP/initdb.log" 2>&1 || { cat "$TMP/initdb.log" >&2; die "initdb failed"; }

max_connections=$(( max_clients + 10 ))
(( max_connections < 20 )) && max_connections=20
cat >>"$DATA/postgresql.conf" <<EOF

# ---- earn benchmark (bench/postgres/run.sh)
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
max_connections = $max_connections
shared_buffers = '$SHARED_BUFFERS'
# full durability: a commit returns only after its WAL is flushed to disk
fsync = on
synchronous_commit = on
full_page_writes = on
wal_sync_method = fdatasync
commit_delay = 0
track_wal_io_timing = on   # for the wal_syncs / wal_sync_ms figures of each run
# no checkpoint inside a run (run.sh issues CHECKPOINT before each run)
max_wal_size = '8GB'
checkpoint_timeout = '30min'
jit = off
EOF

"${AS_PG[@]}" "$PGBIN/pg_ctl" -D "$DATA" -l "$SERVER_LOG" -w -t 60 start >/dev/null \
    || { tail -n 30 "$SERVER_LOG" >&2; die "server failed to start"; }
server_started=1

PSQL=("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres)
q() { timeout 300 "${PSQL[@]}" -d "${DB:-postgres}" -At -c "$1"; }

q "CREATE DATABASE earnbench" >/dev/null
DB=earnbench

settings=$(q "SELECT string_agg(name || '=' || current_setting(name), ' ' ORDER BY name)
              FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes',
              'wal_sync_method','shared_buffers','max_connections','wal_level','max_wal_size')")
info "settings: $settings"
for s in fsync=on synchronous_commit=on full_page_writes=on; do
    [[ " $settings " == *" $s "* ]] || die "server does not have $s"
done

# ---------------------------------------------------------------- runs
# Percentile by nearest rank: the ceil(n*pm/1000)-th smallest of the n sorted latencies (µs),
# in integer arithmetic; printed in ms.
percentile_ms() { # sorted_file n permille
    local rank=$(( ($2 * $3 + 999) / 1000 ))
    awk -v r="$rank" 'NR == r { printf "%.3f", $1 / 1000; exit }' "$1"
}

# The disk's flush latency on this machine can vary a lot over time (VM storage), so it is
# probed right before each run: 8 KiB O_DSYNC overwrites of a preallocated file in $TMP,
# the same kind of write as a WAL flush. Prints the mean ms per synced write.
probe_sync_ms() {
    local f="$TMP/sync-probe" count=200 t0 t1
    dd if=/dev/zero of="$f" bs=8k count="$count" conv=fsync status=none
    t0=$(date +%s%N)
    timeout 60 dd if=/dev/zero of="$f" bs=8k count="$count" oflag=dsync conv=notrunc status=none \
        || { echo "n/a"; return; }
    t1=$(date +%s%N)
    rm -f "$f"
    awk -v ns=$(( t1 - t0 )) -v n="$count" 'BEGIN { printf "%.3f", ns / n / 1e6 }'
}

# CPU used by other processes during a run, as a share of all cores: whole-machine busy time
# (/proc/stat) minus the server's (postmaster, its children, reaped children) and pgbench's
# (bash's `times` for reaped children). Tells whether the machine was quiet.
HZ=$(getconf CLK_TCK)
machine_busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat; }
server_cpu() {
    local pm
    pm=$(head -n 1 "$DATA/postmaster.pid")
    awk -v pm="$pm" 'FNR == 1 {
            sub(/^.*\) /, "")   # fields after "pid (comm) ": state=$1 ppid=$2 ... utime=$12
            if (FILENAME == "/proc/" pm "/stat") t += $12 + $13 + $14 + $15
            else if ($2 == pm) t += $12 + $13
        } END { print t + 0 }' /proc/[0-9]*/stat 2>/dev/null
}
# `times` must run in this shell, not in a $(...) subshell, whose children times start at 0.
children_cpu() { # variable name
    times >"$TMP/times"
    printf -v "$1" '%s' "$(awk -v hz="$HZ" 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] } }
        END { printf "%d", t * hz }' "$TMP/times")"
}

run=0
for variant in $VARIANTS; do
    for c in $CLIENTS; do
        run=$(( run + 1 ))
        j=$(( c < THREADS ? c : THREADS ))
        info "[$variant clients=$c] loading schema ($MEMBERS members)"
        timeout 600 "${PSQL[@]}" -d "$DB" -v members="$MEMBERS" -f "$SCRIPT_DIR/schema.sql" >/dev/null \
            || die "loading schema.sql failed"
        q "CHECKPOINT" >/dev/null
        sync_ms=$(probe_sync_ms)
        q "SELECT pg_stat_reset_shared('wal')" >/dev/null

        info "[$variant clients=$c] pgbench -c $c -j $j -T $DURATION"
        prefix="$LOGS/$variant-c$c"
        rm -f "$prefix".*
        out="$TMP/pgbench-$variant-c$c.out"
        busy0=$(machine_busy); srv0=$(server_cpu); children_cpu kids0; t0=$(date +%s%N)
        if ! timeout $(( DURATION + 300 )) "$PGBIN/pgbench" -h 127.0.0.1 -p "$PORT" -U postgres \
                -n -M prepared -c "$c" -j "$j" -T "$DURATION" \
                -D run="$run" -D seq=0 -D members="$MEMBERS" \
                -f "$SCRIPT_DIR/$variant.sql" --log --log-prefix="$prefix" "$DB" >"$out" 2>&1; then
            cat "$out" >&2
            die "pgbench failed for $variant clients=$c"
        fi

        sleep 0.2   # let the backends of the finished clients exit
        busy1=$(machine_busy); srv1=$(server_cpu); children_cpu kids1; t1=$(date +%s%N)
        other_pct=$(awk -v b=$(( busy1 - busy0 )) -v o=$(( srv1 - srv0 + kids1 - kids0 )) \
            -v ns=$(( t1 - t0 )) -v hz="$HZ" -v n="$(nproc)" \
            'BEGIN { x = (b - o) / (ns / 1e9 * hz * n) * 100; printf "%.0f", (x < 0 ? 0 : x) }')
        (( other_pct <= 10 )) || info "WARNING: other processes used ${other_pct}% of the CPU during this run"

        tps=$(awk '/^tps = / { print $3; exit }' "$out")
        processed=$(awk -F': ' '/^number of transactions actually processed/ { split($2, a, "/"); print a[1]; exit }' "$out")
        failed=$(awk -F': ' '/^number of failed transactions/ { split($2, a, " "); print a[1]; exit }' "$out")
        avg_ms=$(awk '/^latency average = / { print $4; exit }' "$out")
        [[ -n "$tps" && -n "$processed" ]] || { cat "$out" >&2; die "could not parse pgbench output"; }
        failed=${failed:-0}

        # Per-transaction log lines: client_id transaction_no latency_us script_no epoch_s epoch_us.
        lat="$TMP/lat-$variant-c$c"
        cat "$prefix".* | awk '$3 ~ /^[0-9]+$/ { print $3 }' | sort -n >"$lat"
        n=$(wc -l <"$lat")
        (( n == processed )) || die "$variant clients=$c: $n latencies logged but pgbench processed $processed"
        (( n > 0 )) || die "$variant clients=$c: no transaction completed"
        p50=$(percentile_ms "$lat" "$n" 500)
        p99=$(percentile_ms "$lat" "$n" 990)
        max_ms=$(awk 'END { printf "%.3f", $1/1000 }' "$lat")

        # WAL flushes during the run (fewer than transactions when commits are grouped).
        read -r wal_syncs wal_sync_ms < <(q "SELECT wal_sync, round((wal_sync_time / greatest(wal_sync, 1))::numeric, 3)
                                             FROM pg_stat_wal" | tr '|' ' ')

        # The work really happened: one entry per earn, balances agree with entries.
        per=1
        [[ "$variant" == *_batch ]] && per=500
        entries=$(q "SELECT count(*) FROM entries")
        (( entries == processed * per )) || die "$variant clients=$c: $entries entries but $processed transactions of $per earns"
        check=$(q "SELECT (SELECT coalesce(sum(points), 0) FROM entries)
                        = (SELECT sum(balance) FROM balances WHERE account LIKE 'member:%')")
        [[ "$check" == t ]] || die "$variant clients=$c: member balances do not match entries"
        if [[ "$variant" == earn_double_entry* ]]; then
            check=$(q "SELECT (SELECT count(*) FROM postings) = 2 * $entries
                          AND (SELECT sum(amount) FROM postings) = 0
                          AND (SELECT sum(balance) FROM balances) = 0")
            [[ "$check" == t ]] || die "$variant clients=$c: postings/balances do not sum to zero"
        fi

        # tps counts earns (transactions times earns per transaction).
        tps=$(awk -v t="$tps" -v p="$per" 'BEGIN { printf "%.1f", t * p }')
        printf 'postgres %s clients=%d threads=%d duration_s=%d tps=%.1f earns_per_txn='"$per"' p50_ms=%s p99_ms=%s avg_ms=%s max_ms=%s txns=%d failed=%d wal_syncs=%d wal_sync_ms=%s disk_sync_ms=%s cpu_other_pct=%s\n' \
            "$variant" "$c" "$j" "$DURATION" "$tps" "$p50" "$p99" "$avg_ms" "$max_ms" "$processed" "$failed" \
            "$wal_syncs" "$wal_sync_ms" "$sync_ms" "$other_pct"
    done
done
