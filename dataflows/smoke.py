"""The smoke dataflow: a running count of events per user, through Kafka or JSON Lines files.

It proves the wiring the real job depends on (Bytewax, its Kafka connectors, event parsing,
keyed state) with the simplest stateful job there is. For every valid input event it emits the
user's count so far as ``{"user_id": ..., "count": ...}``; on Kafka the message key is the user
id, so a user's counts stay in order in one partition and the last one is the total. Input that
is not a valid event is reported on stderr and not counted; a Kafka consumer error stops the
flow. The Kafka input is read to its end at start (``tail=False``), then the flow finishes.

>>> import tempfile
>>> from pathlib import Path
>>> from bytewax.testing import run_main
>>> from operators.jsonl import write_jsonl
>>> folder = Path(tempfile.mkdtemp())
>>> click = b'{"user_id": "%s", "item_id": "i1", "ts": 1700000000000, "type": "click"}'
>>> write_jsonl(folder / "in.jsonl", [click % b"u1", click % b"u2", click % b"u1"])
3
>>> run_main(file_flow(folder / "in.jsonl", folder / "out.jsonl"))
>>> for line in sorted((folder / "out.jsonl").read_text().splitlines()):
...     print(line)
{"user_id":"u1","count":1}
{"user_id":"u1","count":2}
{"user_id":"u2","count":1}
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path
from typing import TypeGuard, cast

import bytewax.operators as op
import orjson
from bytewax.connectors.kafka import KafkaError, KafkaSinkMessage, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.connectors.stdio import StdOutSink
from bytewax.dataflow import Dataflow, Stream
from bytewax.run import cli_main
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from dataflows.connectors import JsonLinesSink, JsonLinesSource
from dataflows.errors import UsageError
from operators.events import Event, Rejected, parse_event

#: How long ``main`` waits for the brokers to answer before calling them unreachable.
BROKER_TIMEOUT_S = 10.0

Count = tuple[str, bytes]  # (user id, JSON value)


def _is_event(parsed: Event | Rejected) -> TypeGuard[Event]:
    return isinstance(parsed, Event)


def _report_rejected(step_id: str, rejected: Rejected) -> None:
    print(f"smoke: skipped input: {rejected.reason}", file=sys.stderr)


def _running_count(count: int | None, _event: Event) -> tuple[int, int]:
    total = (count or 0) + 1
    return total, total


def _count_value(user_count: tuple[str, int]) -> Count:
    user_id, count = user_count
    return user_id, orjson.dumps({"user_id": user_id, "count": count})


def count_per_user(raw: Stream[bytes]) -> Stream[Count]:
    """Parse, report what is not an event, and emit each user's running count."""
    parsed = op.map("parse", raw, parse_event)
    valid = op.branch("is_event", parsed, _is_event)
    # Bytewax types the false branch as the input type; it only ever holds rejections.
    op.inspect("report_rejected", cast(Stream[Rejected], valid.falses), _report_rejected)
    by_user = op.key_on("by_user", valid.trues, lambda event: event.user_id)
    return op.map("to_json", op.stateful_map("count", by_user, _running_count), _count_value)


def _describe_kafka_error(error: KafkaError[bytes | None, bytes | None]) -> str:
    where = f"topic {error.msg.topic} partition {error.msg.partition}"
    return f"Kafka consumer error on {where}: {error.err.str()}"


def _message_value(message: KafkaSourceMessage[bytes | None, bytes | None]) -> bytes:
    return message.value or b""  # a tombstone (no value) is rejected like any non-event


def _to_message(user_value: Count) -> KafkaSinkMessage[bytes, bytes]:
    user_id, value = user_value
    return KafkaSinkMessage(user_id.encode(), value)


def kafka_flow(brokers: list[str], in_topic: str, out_topic: str) -> Dataflow:
    """Count the events in ``in_topic`` (every partition, to its current end) into ``out_topic``."""
    flow = Dataflow("smoke_kafka")
    consumed = kop.input("consume", flow, brokers=brokers, topics=[in_topic], tail=False)
    op.map("describe_error", consumed.errs, _describe_kafka_error).then(
        op.raises, "stop_on_kafka_error"
    )
    counts = count_per_user(op.map("value", consumed.oks, _message_value))
    # Idempotence keeps each partition in produce order even when the client retries a batch.
    kop.output(
        "produce",
        op.map("to_message", counts, _to_message),
        brokers=brokers,
        topic=out_topic,
        add_config={"enable.idempotence": "true"},
    )
    return flow


def file_flow(source: Path, out: Path | None = None) -> Dataflow:
    """Count the events of a JSON Lines file or directory into ``out`` (None: stdout)."""
    flow = Dataflow("smoke_file")
    lines = op.map("value", op.input("read", flow, JsonLinesSource(source)), lambda raw: raw.value)
    counts = count_per_user(lines)
    if out is None:
        op.output("print", op.map("line", counts, lambda count: count[1].decode()), StdOutSink())
    else:
        op.output("write", counts, JsonLinesSink(out))
    return flow


def bundled_sample() -> Path:
    return Path(str(resources.files("dataflows") / "data" / "smoke.jsonl.gz"))


def _check_topics(brokers: str, topics: list[str]) -> None:
    # log_level 0: the one-line error below says it all, without librdkafka's retry chatter.
    admin = AdminClient({"bootstrap.servers": brokers, "log_level": 0})
    try:
        metadata = admin.list_topics(timeout=BROKER_TIMEOUT_S)
    except KafkaException as error:
        raise UsageError(f"cannot reach Kafka at {brokers}: {error.args[0].str()}") from None
    missing = [topic for topic in topics if topic not in metadata.topics]
    if missing:
        raise UsageError(f"no topic {', '.join(missing)} on {brokers}; create it first")


def main(args: argparse.Namespace) -> int:
    if args.brokers is None:
        if args.in_topic or args.out_topic:
            raise UsageError("--in-topic and --out-topic need --brokers")
        source = Path(args.input) if args.input else bundled_sample()
        if not source.exists():
            raise UsageError(f"no such file or directory: {source}")
        cli_main(file_flow(source, Path(args.output) if args.output else None))
        return 0
    if args.input or args.output:
        raise UsageError("--input/--output are for files; with --brokers use the topics")
    if not (args.in_topic and args.out_topic):
        raise UsageError("--brokers needs --in-topic and --out-topic")
    _check_topics(args.brokers, [args.in_topic, args.out_topic])
    cli_main(kafka_flow(args.brokers.split(","), args.in_topic, args.out_topic))
    return 0
