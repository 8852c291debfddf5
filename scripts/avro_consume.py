#!/usr/bin/env python3
"""Read Avro records (Confluent wire format) from a Kafka topic with a client
eddy's authors did not write: Confluent's Python client (confluent-kafka, on
librdkafka) and its AvroDeserializer, which fetches each record's schema from
the schema registry by the id in the record's header.

Prints one JSON object per record on stdout:

  {"partition": 0, "offset": 3, "key": ..., "key_schema_id": 3, "schema_id": 2, "value": {...}}

key is the record key as UTF-8 text (null when absent), or with
--key-format avro the key decoded the same way as the value (key_schema_id
is then its schema id; null otherwise); timestamp fields
(timestamp-millis and the like, decoded by fastavro into datetimes) are
printed as milliseconds since the epoch. Records are read with
read_committed isolation from the beginning of every partition, by a fresh
consumer group that commits nothing.

Exits 0 after --count records, 1 if fewer arrived within --timeout seconds
or a record could not be decoded (the message names it).

The dependencies are pinned in scripts/avro_consume.requirements.txt;
scripts/test.sh installs them into a virtualenv under the cache dir.
"""

import argparse
import datetime
import json
import struct
import sys
import time
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext


def plain(v):
    """Makes a decoded Avro value printable as JSON."""
    if isinstance(v, datetime.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=datetime.timezone.utc)
        return round(v.timestamp() * 1000)
    if isinstance(v, datetime.date):
        return v.isoformat()
    if isinstance(v, dict):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, bytes):
        return v.hex()
    return v


def schema_id(raw):
    """The schema id in a Confluent wire-format header, or None."""
    return struct.unpack(">I", raw[1:5])[0] if raw and len(raw) >= 5 else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--brokers", required=True, help="bootstrap servers, host:port[,host:port]")
    p.add_argument("--topic", required=True)
    p.add_argument("--registry-url", "--registry", dest="registry", required=True, help="Confluent-compatible schema registry URL")
    p.add_argument("--count", type=int, required=True, help="records to read")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for them")
    p.add_argument("--key-format", choices=["string", "avro"], default="string",
                   help="how keys are written: UTF-8 text, or Avro in the Confluent wire format")
    a = p.parse_args()

    registry = SchemaRegistryClient({"url": a.registry})
    deserialize = AvroDeserializer(registry)
    consumer = Consumer({
        "bootstrap.servers": a.brokers,
        "group.id": "avro-consume-" + uuid.uuid4().hex,
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
        "isolation.level": "read_committed",
    })
    consumer.subscribe([a.topic])
    n = 0
    deadline = time.monotonic() + a.timeout
    try:
        while n < a.count:
            if time.monotonic() > deadline:
                print(f"avro_consume: read {n} of {a.count} records from {a.topic} in {a.timeout}s",
                      file=sys.stderr)
                return 1
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            if msg.error():
                if msg.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise KafkaException(msg.error())
            raw, rawkey = msg.value(), msg.key()
            key, key_id = None, None
            try:
                value = deserialize(raw, SerializationContext(msg.topic(), MessageField.VALUE))
                if rawkey is not None and a.key_format == "avro":
                    key = plain(deserialize(rawkey, SerializationContext(msg.topic(), MessageField.KEY)))
                    key_id = schema_id(rawkey)
                elif rawkey is not None:
                    key = rawkey.decode("utf-8")
            except Exception as e:  # the deserializer's errors vary by cause
                print(f"avro_consume: {msg.topic()}/{msg.partition()}@{msg.offset()}: {e}", file=sys.stderr)
                return 1
            print(json.dumps({
                "partition": msg.partition(),
                "offset": msg.offset(),
                "key": key,
                "key_schema_id": key_id,
                "schema_id": schema_id(raw),
                "value": plain(value),
                # The Python type of each value field as the deserializer
                # gives it (int for an Avro long, float for a double).
                "value_types": {k: type(x).__name__ for k, x in value.items()} if isinstance(value, dict) else None,
            }, sort_keys=True), flush=True)
            n += 1
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
