"""Reads a topic written in schema-registry mode as a Kafka user's consumer
would: confluent-kafka's AvroDeserializer with a SchemaRegistryClient,
which reads the Confluent wire format and fetches each writer schema from
the registry by its id. Prints, as JSON, one object per record: the key and
value as decoded, and the schema ids in their headers, for a test to judge.

usage: registry_read.py BOOTSTRAP REGISTRY_URL TOPIC
"""

import json
import struct
import sys

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

bootstrap, registry_url, topic = sys.argv[1:4]

registry = SchemaRegistryClient({"url": registry_url})
deserialize = AvroDeserializer(registry)

c = Consumer({
    "bootstrap.servers": bootstrap,
    "group.id": f"{topic}-registry-reader",
    "enable.auto.commit": False,
    "enable.partition.eof": True,
    "isolation.level": "read_committed",
})
meta = c.list_topics(topic, timeout=10).topics[topic]
parts = []
for p in meta.partitions:
    low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
    if high > low:
        parts.append(TopicPartition(topic, p, low))
out = []
if parts:
    c.assign(parts)
    left = {tp.partition for tp in parts}
    idle = 0
    while left and idle < 30:
        m = c.poll(1.0)
        if m is None:
            idle += 1
            continue
        if m.error():
            if m.error().code() == -191:  # _PARTITION_EOF
                left.discard(m.partition())
                continue
            raise SystemExit(f"consume error: {m.error()}")
        key, value = m.key(), m.value()
        out.append({
            "key_schema_id": struct.unpack(">bI", key[:5])[1] if key else None,
            "value_schema_id": struct.unpack(">bI", value[:5])[1] if value else None,
            "key": deserialize(key, SerializationContext(topic, MessageField.KEY)),
            "value": deserialize(value, SerializationContext(topic, MessageField.VALUE))
            if value is not None else None,
        })
c.close()
print(json.dumps(out, default=str))
