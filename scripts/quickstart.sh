#!/usr/bin/env bash
# Quickstart: starts the local stack, loads the sample `shop` database into
# the source, runs both connectors, shows the destination catching up and
# then following live changes. Ctrl-C stops the connectors (the stack keeps
# running; `scripts/stack.sh down` stops it).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SOURCE_PORT=${STACK_SOURCE_PORT:-3307}
DEST_PORT=${STACK_DEST_PORT:-3308}
KAFKA_PORT=${STACK_KAFKA_PORT:-9092}
work=.stack/quickstart
say() { printf '\n== %s\n' "$*"; }
src() { mariadb --no-defaults -h127.0.0.1 -P"$SOURCE_PORT" -uroot "$@"; }
dst() { mariadb --no-defaults -h127.0.0.1 -P"$DEST_PORT" -uroot "$@"; }

say "starting the local stack"
scripts/stack.sh up

say "building the connectors"
cargo build --release --bins --locked

say "loading the sample database into the source (127.0.0.1:$SOURCE_PORT)"
src < examples/shop.sql
dst -e "DROP DATABASE IF EXISTS shop"

# A new topic prefix for each run, so that an earlier run's topics and
# positions never mix with this one's.
prefix="quickstart-$(date +%s)"
mkdir -p "$work"
sed -e "s/^topic_prefix = .*/topic_prefix = \"$prefix\"/" \
    -e "s/127.0.0.1:3307/127.0.0.1:$SOURCE_PORT/; s/127.0.0.1:9092/127.0.0.1:$KAFKA_PORT/" \
    examples/source.toml >"$work/source.toml"
sed -e "s/^topic_prefix = .*/topic_prefix = \"$prefix\"/; s/^group_id = .*/group_id = \"$prefix\"/" \
    -e "s/127.0.0.1:3308/127.0.0.1:$DEST_PORT/; s/127.0.0.1:9092/127.0.0.1:$KAFKA_PORT/" \
    examples/sink.toml >"$work/sink.toml"

say "running source-connector and sink-connector (logs in $work/)"
target/release/sink-connector run --config "$work/sink.toml" >"$work/sink.log" 2>&1 &
sink_pid=$!
target/release/source-connector run --config "$work/source.toml" >"$work/source.log" 2>&1 &
source_pid=$!
stop() {
    kill -TERM "$source_pid" "$sink_pid" 2>/dev/null || true
    wait "$source_pid" "$sink_pid" 2>/dev/null || true
    echo "connectors stopped"
}
trap stop EXIT

checksums() { "$@" -N -e "CHECKSUM TABLE shop.customers, shop.products, shop.orders, shop.order_lines" 2>/dev/null | awk '{print $2}' | tr '\n' ' '; }
counts() { "$@" -N -e "SELECT (SELECT COUNT(*) FROM shop.customers), (SELECT COUNT(*) FROM shop.orders), (SELECT COUNT(*) FROM shop.order_lines)" 2>/dev/null | tr '\t' '/'; }

say "destination catching up (customers/orders/order_lines)"
for i in $(seq 1 240); do
    printf '  source %s   destination %s\n' "$(counts src)" "$(counts dst || echo -)"
    [ "$(checksums src)" = "$(checksums dst)" ] && break
    kill -0 "$source_pid" 2>/dev/null || { tail -3 "$work/source.log"; exit 1; }
    kill -0 "$sink_pid" 2>/dev/null || { tail -3 "$work/sink.log"; exit 1; }
    sleep 0.5
done
echo "  equal: CHECKSUM TABLE $(checksums dst)"

say "live changes on the source"
src -e "INSERT INTO shop.customers (name, email, country) VALUES ('Live Customer', 'live@example.com', 'NZ');
        UPDATE shop.products SET price = price * 2, stock = stock + 1 WHERE sku = 'P000000007';
        DELETE FROM shop.order_lines WHERE order_id = 1;
        UPDATE shop.orders SET status = 'shipped' WHERE id = 2;"
for i in $(seq 1 40); do
    [ "$(checksums src)" = "$(checksums dst)" ] && break
    sleep 0.25
done
dst -t -e "SELECT id, name, email, country FROM shop.customers WHERE email = 'live@example.com';
           SELECT sku, price, stock FROM shop.products WHERE sku = 'P000000007';
           SELECT COUNT(*) AS lines_of_order_1 FROM shop.order_lines WHERE order_id = 1;
           SELECT id, status FROM shop.orders WHERE id = 2;"
echo "  destination equal to source: CHECKSUM TABLE $(checksums dst)"

say "consoles: http://127.0.0.1:9464/ (source) and http://127.0.0.1:9465/ (sink); metrics at /metrics"
say "the connectors keep following the source; write to it on port $SOURCE_PORT and watch port $DEST_PORT. Ctrl-C to stop."
wait "$source_pid" "$sink_pid"
