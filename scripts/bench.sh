#!/usr/bin/env bash
# Benchmark: prints figures, asserts nothing.
#
# Loads a sysbench dataset (4 tables x 250,000 rows, override with
# BENCH_TABLES / BENCH_ROWS) into the source, then measures, in one run:
#   1. full synchronization: rows/s through source-connector -> Kafka ->
#      sink-connector until the destination has every row;
#   2. incremental synchronization: BENCH_TXNS (20,000) sysbench write-only
#      transactions on the source, change events/s until the destination
#      has applied them all;
# each beside the same work done by `mariadb-dump | mariadb` (1) and by
# MariaDB's own replication, the second destination as a native replica
# replaying the same transactions from the binlog (2).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TABLES=${BENCH_TABLES:-4}
ROWS=${BENCH_ROWS:-250000}
TXNS=${BENCH_TXNS:-20000}
SOURCE_PORT=${STACK_SOURCE_PORT:-3307}
DEST_PORT=${STACK_DEST_PORT:-3308}
DEST2_PORT=${STACK_DEST2_PORT:-3309}
KAFKA_PORT=${STACK_KAFKA_PORT:-9092}
work=.stack/bench
mkdir -p "$work"

log() { printf 'bench: %s\n' "$*" >&2; }
my() { local port=$1; shift; mariadb --no-defaults -h127.0.0.1 -P"$port" -uroot "$@"; }
now() { date +%s.%N; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }

scripts/stack.sh up
if ! command -v sysbench >/dev/null; then
    log "installing sysbench"
    if [ "$(id -u)" = 0 ]; then sudo=""; else sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends sysbench >/dev/null
fi
cargo build --release --bins --locked

sb() {
    sysbench oltp_write_only --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$SOURCE_PORT" \
        --mysql-user=root --mysql-db=sbtest --tables="$TABLES" --table-size="$ROWS" "$@"
}

# Wait until row `id` of every sbtest table at the destination satisfies
# `cond` (one cheap lookup per table).
wait_rows() { # PORT CONDITION
    local port=$1 cond=$2 i t n
    while :; do
        n=0
        for ((t = 1; t <= TABLES; t++)); do
            if [ "$(my "$port" -N -e "SELECT COUNT(*) FROM sbtest.sbtest$t WHERE $cond" 2>/dev/null || echo 0)" = 1 ]; then
                n=$((n + 1))
            fi
        done
        [ "$n" = "$TABLES" ] && return
        kill -0 "$source_pid" 2>/dev/null || { log "source-connector died: $(tail -2 "$work/source.log")"; exit 1; }
        kill -0 "$sink_pid" 2>/dev/null || { log "sink-connector died: $(tail -2 "$work/sink.log")"; exit 1; }
        sleep 0.1
    done
}

# CPU seconds (user + system) a process has used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$1/stat"; }

checksums() { # PORT
    local t list=""
    for ((t = 1; t <= TABLES; t++)); do list="$list${list:+, }sbtest.sbtest$t"; done
    my "$1" -N -e "CHECKSUM TABLE $list" | awk '{print $2}' | tr '\n' ' '
}

log "preparing sbtest: $TABLES tables x $ROWS rows"
for p in "$SOURCE_PORT" "$DEST_PORT" "$DEST2_PORT"; do my "$p" -e "DROP DATABASE IF EXISTS sbtest"; done
my "$DEST2_PORT" -e "STOP SLAVE; RESET SLAVE ALL" 2>/dev/null || true
my "$SOURCE_PORT" -e "CREATE DATABASE sbtest"
sb --threads=2 prepare >/dev/null
total_rows=$((TABLES * ROWS))

# 1b. mariadb-dump | mariadb into the second destination.
log "mariadb-dump | mariadb"
gtid_at_dump=$(my "$SOURCE_PORT" -N -e "SELECT @@gtid_binlog_pos")
t0=$(now)
mariadb-dump --no-defaults -h127.0.0.1 -P"$SOURCE_PORT" -uroot --single-transaction --databases sbtest \
    | my "$DEST2_PORT"
t1=$(now)
dump_secs=$(secs "$t0" "$t1")

# 1a. The pipeline's full synchronization into the destination.
prefix="bench-$(date +%s)"
sed -e "s/^databases = .*/databases = [\"sbtest\"]/; s/^topic_prefix = .*/topic_prefix = \"$prefix\"/" \
    -e "s/127.0.0.1:3307/127.0.0.1:$SOURCE_PORT/; s/127.0.0.1:9092/127.0.0.1:$KAFKA_PORT/" \
    examples/source.toml >"$work/source.toml"
sed -e "s/^topic_prefix = .*/topic_prefix = \"$prefix\"/; s/^group_id = .*/group_id = \"$prefix\"/" \
    -e "s/127.0.0.1:3308/127.0.0.1:$DEST_PORT/; s/127.0.0.1:9092/127.0.0.1:$KAFKA_PORT/" \
    examples/sink.toml >"$work/sink.toml"
log "pipeline full synchronization"
t0=$(now)
target/release/sink-connector run --config "$work/sink.toml" >"$work/sink.log" 2>&1 &
sink_pid=$!
target/release/source-connector run --config "$work/source.toml" >"$work/source.log" 2>&1 &
source_pid=$!
# Stop the connectors at exit.
cleanup() {
    kill -TERM "$source_pid" "$sink_pid" 2>/dev/null || true
    wait "$source_pid" "$sink_pid" 2>/dev/null || true
}
trap cleanup EXIT
wait_rows "$DEST_PORT" "id = $ROWS"
t1=$(now)
snap_secs=$(secs "$t0" "$t1")
snap_cpu_source=$(cpu "$source_pid"); snap_cpu_sink=$(cpu "$sink_pid")
[ "$(checksums "$SOURCE_PORT")" = "$(checksums "$DEST_PORT")" ] || { log "destination differs after the snapshot"; exit 1; }

# 2a. Incremental: sysbench write-only transactions, then a final marker
# update per table; the destination is done when it has every marker (each
# table's changes arrive in order).
log "pipeline incremental synchronization: $TXNS write-only transactions"
t_cdc=$(now)
sb --threads=4 --events="$TXNS" --time=0 --rate=0 run >"$work/sysbench.log"
for ((t = 1; t <= TABLES; t++)); do my "$SOURCE_PORT" -e "UPDATE sbtest.sbtest$t SET c = 'bench-done' WHERE id = 1"; done
t_src=$(now)
wait_rows "$DEST_PORT" "id = 1 AND c = 'bench-done'"
t1=$(now)
cdc_secs=$(secs "$t_cdc" "$t1")
cdc_cpu_source=$(secs "$snap_cpu_source" "$(cpu "$source_pid")"); cdc_cpu_sink=$(secs "$snap_cpu_sink" "$(cpu "$sink_pid")")
# Row events: each write-only transaction updates two rows, deletes one and
# inserts one; plus the markers.
events=$((TXNS * 4 + TABLES))
[ "$(checksums "$SOURCE_PORT")" = "$(checksums "$DEST_PORT")" ] || { log "destination differs after the changes"; exit 1; }
kill -TERM "$source_pid" "$sink_pid"; wait "$source_pid" "$sink_pid" 2>/dev/null || true

# 2b. MariaDB's replication: the second destination (holding the dump)
# replays the same transactions from the source's binlog.
log "native replication of the same transactions"
my "$DEST2_PORT" -e "SET GLOBAL gtid_slave_pos = '$gtid_at_dump';
    CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=$SOURCE_PORT, MASTER_USER='root', MASTER_PASSWORD='', MASTER_USE_GTID=slave_pos;"
target_gtid=$(my "$SOURCE_PORT" -N -e "SELECT @@gtid_binlog_pos")
t0=$(now)
my "$DEST2_PORT" -e "START SLAVE"
my "$DEST2_PORT" -N -e "SELECT MASTER_GTID_WAIT('$target_gtid', 3600)" >/dev/null
t1=$(now)
native_secs=$(secs "$t0" "$t1")
my "$DEST2_PORT" -e "STOP SLAVE; RESET SLAVE ALL"
[ "$(checksums "$SOURCE_PORT")" = "$(checksums "$DEST2_PORT")" ] || log "warning: the native replica differs from the source"

cat <<REPORT

Benchmark ($TABLES tables x $ROWS rows, $TXNS write-only transactions; $(nproc) cores)
                                         seconds      rate
full sync, this pipeline                 $(printf '%8s' "$snap_secs")  $(printf '%8s' "$(rate "$total_rows" "$snap_secs")") rows/s
full sync, mariadb-dump | mariadb        $(printf '%8s' "$dump_secs")  $(printf '%8s' "$(rate "$total_rows" "$dump_secs")") rows/s
incremental, this pipeline               $(printf '%8s' "$cdc_secs")  $(printf '%8s' "$(rate "$events" "$cdc_secs")") events/s  ($(rate "$TXNS" "$cdc_secs") txn/s; sysbench itself took $(secs "$t_cdc" "$t_src") s)
incremental, native replication          $(printf '%8s' "$native_secs")  $(printf '%8s' "$(rate "$events" "$native_secs")") events/s  (replaying the binlog after the fact)

CPU seconds used by the connectors (source / sink): full sync $snap_cpu_source / $snap_cpu_sink, incremental $cdc_cpu_source / $cdc_cpu_sink
REPORT
