"""Reads a source connector's topics as a consumer that is not ours would:
confluent-kafka for Kafka, fastavro with the writer schemas from
`<prefix>.schemas` for the records. Counts what it reads and prints it as
JSON, for a test to judge.

usage: count_changes.py BOOTSTRAP PREFIX DATABASE read_committed|read_uncommitted

Printed:
- snapshot: records read from the snapshot (no transaction block);
  snapshot_rows: the rows (by column `id`) they hold, snapshot_rows_repeated
  those read more than once;
- per_gtid: binlog records per GTID;
- repeated: (GTID, total_order) pairs read more than once;
- per_row: change records per "table/key" of the table `ledger` (key `id`);
- ends: event_count of each END on `<prefix>.transaction`, by GTID;
- begins_repeated, ends_repeated: BEGIN/END records read more than once;
- not_change_records: records in the table topics that are neither change
  records nor tombstones (there should be none: schema changes are on
  `<prefix>.schema-changes` only).
"""

import io
import json
import struct
import sys
from collections import Counter

import fastavro
from confluent_kafka import Consumer, KafkaError, TopicPartition

bootstrap, prefix, database, isolation = sys.argv[1:5]


def read_all(topic):
    """Every record of every partition of `topic`, to its end as a consumer
    with this isolation level sees it."""
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"{prefix}-counter",
        "enable.auto.commit": False,
        "enable.partition.eof": True, "fetch.wait.max.ms": 10,
        "isolation.level": isolation,
    })
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        parts = []
        for p in meta.partitions:
            low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                parts.append(TopicPartition(topic, p, low))
        if not parts:
            return []
        c.assign(parts)
        left = {tp.partition for tp in parts}
        out = []
        idle = 0
        while left:
            m = c.poll(1.0)
            if m is None:
                idle += 1
                if idle > 60:
                    raise SystemExit(f"{topic}: no end reached in 60 s")
                continue
            idle = 0
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    left.discard(m.partition())
                    continue
                raise SystemExit(f"{topic}: {m.error()}")
            out.append(m)
        return out
    finally:
        c.close()


schemas = {}
for m in read_all(f"{prefix}.schemas"):
    if m.key() and m.value():
        schemas[int(m.key().decode(), 16)] = fastavro.parse_schema(json.loads(m.value()))


def decode(payload):
    """An Avro single-object encoded datum: C3 01, the writer schema's
    64-bit fingerprint (little-endian), the datum."""
    if payload[:2] != b"\xc3\x01":
        raise SystemExit("a record is not Avro single-object encoded")
    (fp,) = struct.unpack("<Q", payload[2:10])
    return fastavro.schemaless_reader(io.BytesIO(payload[10:]), schemas[fp], None)


snapshot = 0
snapshot_rows = Counter()
per_gtid = Counter()
seen = Counter()
per_row = Counter()
other_topics = []
for topic in sorted(Consumer({"bootstrap.servers": bootstrap, "group.id": "x"})
                    .list_topics(timeout=10).topics):
    if not topic.startswith(f"{prefix}.{database}."):
        continue
    table = topic[len(f"{prefix}.{database}."):]
    for m in read_all(topic):
        if m.value() is None:
            continue  # tombstone
        v = decode(m.value())
        if "op" not in v:
            other_topics.append(topic)  # not a change record
            continue
        txn = v.get("transaction")
        if txn is None:
            snapshot += 1
            row = v["after"]
            if row is not None and "id" in row:
                snapshot_rows[f"{table}/{row['id']}"] += 1
        else:
            per_gtid[txn["id"]] += 1
            seen[(txn["id"], txn["total_order"])] += 1
        if table == "ledger" and txn is not None:
            row = v["after"] or v["before"]
            per_row[f"{table}/{row['id']}"] += 1

ends = {}
begins = Counter()
end_counts = Counter()
for m in read_all(f"{prefix}.transaction"):
    v = decode(m.value())
    if v["status"] == "BEGIN":
        begins[v["id"]] += 1
    else:
        end_counts[v["id"]] += 1
        ends[v["id"]] = v["event_count"]

print(json.dumps({
    "snapshot": snapshot,
    "snapshot_rows": len(snapshot_rows),
    "snapshot_rows_repeated": sum(1 for n in snapshot_rows.values() if n > 1),
    "per_gtid": per_gtid,
    "repeated": [list(k) for k, n in seen.items() if n > 1],
    "per_row": per_row,
    "ends": ends,
    "begins_repeated": sum(1 for n in begins.values() if n > 1),
    "ends_repeated": sum(1 for n in end_counts.values() if n > 1),
    "not_change_records": len(other_topics),
}))
