"""The smoke dataflow end to end on a real broker, read back as a downstream consumer group."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from dataflows import cli

USERS = 500
EVENTS = 10_000
INPUT_PARTITIONS = 3
OUTPUT_PARTITIONS = 2
# Guards against a hang, not a speed target: reading 10,000 local messages takes a second or two.
CONSUME_DEADLINE_S = 120.0


def _events(seed: int) -> list[tuple[str, bytes]]:
    """Every user at least once, then a skewed mix (a few heavy users, a long tail)."""
    rng = random.Random(seed)
    users = [f"user-{n:03d}" for n in range(USERS)]
    weights = [1 / (rank + 1) for rank in range(USERS)]
    picks = users + rng.choices(users, weights, k=EVENTS - USERS)
    ts = 1_700_000_000_000
    events = []
    for n, user in enumerate(picks):
        record = {"user_id": user, "item_id": f"i{rng.randrange(50)}", "ts": ts + n, "type": "view"}
        events.append((user, orjson.dumps(record)))
    return events


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for n, value in enumerate(values):
        # Spread over every partition, so one user's events come from several partitions.
        producer.produce(topic, value, partition=n % INPUT_PARTITIONS, on_delivery=delivered)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []


def _consume_all(bootstrap: str, topic: str) -> tuple[list[Message], Consumer]:
    """Join a fresh consumer group and read the topic to its current end."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"smoke-reader-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    ends = {
        part: consumer.get_watermark_offsets(TopicPartition(topic, part), timeout=10)[1]
        for part in range(OUTPUT_PARTITIONS)
    }
    consumer.subscribe([topic])
    next_offset = dict.fromkeys(ends, 0)
    messages: list[Message] = []
    deadline = time.monotonic() + CONSUME_DEADLINE_S
    while any(next_offset[part] < end for part, end in ends.items()):
        if time.monotonic() > deadline:
            pytest.fail(f"consumer group read {len(messages)} of {sum(ends.values())} messages")
        message = consumer.poll(0.5)
        if message is None:
            continue
        assert message.error() is None, message.error()
        messages.append(message)
        next_offset[message.partition()] = message.offset() + 1
    return messages, consumer


def test_every_users_count_arrives_exactly_once_and_in_order(
    kafka_bootstrap: str, kafka_topic: Callable[..., str]
) -> None:
    source = kafka_topic(partitions=INPUT_PARTITIONS)
    sink = kafka_topic(partitions=OUTPUT_PARTITIONS)
    events = _events(seed=2)
    expected = Counter(user for user, _ in events)
    _produce(kafka_bootstrap, source, [value for _, value in events])

    argv = ["smoke", "--brokers", kafka_bootstrap, "--in-topic", source, "--out-topic", sink]
    assert cli.main(argv) == 0

    messages, consumer = _consume_all(kafka_bootstrap, sink)
    counts: dict[str, list[int]] = defaultdict(list)
    for message in messages:
        record = orjson.loads(message.value())
        assert message.key() == record["user_id"].encode()
        counts[record["user_id"]].append(record["count"])
    assert len(messages) == EVENTS
    assert counts.keys() == expected.keys()
    for user, total in expected.items():
        assert counts[user] == list(range(1, total + 1)), user

    consumer.commit(asynchronous=False)
    parts = [TopicPartition(sink, part) for part in range(OUTPUT_PARTITIONS)]
    committed = {tp.partition: tp.offset for tp in consumer.committed(parts, timeout=10)}
    per_partition = Counter(message.partition() for message in messages)
    assert committed == {part: per_partition[part] for part in range(OUTPUT_PARTITIONS)}
    consumer.close()


def test_a_missing_topic_is_one_readable_line(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    sink = kafka_topic()
    argv = ["smoke", "--brokers", kafka_bootstrap, "--in-topic", "no-such-topic"]
    assert cli.main([*argv, "--out-topic", sink]) == 2
    expected = f"streamrec smoke: no topic no-such-topic on {kafka_bootstrap}; create it first\n"
    assert capsys.readouterr().err == expected
