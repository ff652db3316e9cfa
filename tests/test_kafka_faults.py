"""Nothing is lost through real Kafka: a mixed stream over three partitions, the broker stopped
for 20 s and restarted under a running job, and the output topic deleted for 20 s and created
again.

Every valid event is its own window (``window.length_s: 0``), so it gets exactly one list,
version ``n`` for the user's ``n``-th event; every invalid message and every duplicate gets one
dead letter naming its partition and offset. The job's Kafka sink is at-least-once, so lists
are counted once per (user, version). What the job does meanwhile:

* **Broker away.** The consumer and producer reconnect by themselves; the sink's flush waits
  for the broker, so the job stalls and then goes on. librdkafka may also report the lost
  connection as consumer errors, which the job dead-letters as ``Kafka error: ...`` without a
  message offset: they are counted apart from the input's dead letters.
* **Output topic missing.** The sink keeps the lists queued and delivers them once the topic is
  back; the job waits meanwhile. The limit is librdkafka's: a message it cannot deliver within
  ``message.timeout.ms`` (300 s by default) fails, and Bytewax's ``KafkaSink`` has no delivery
  callback, so such a list would be dropped without a word. Set
  ``kafka.extra: {message.timeout.ms: "0"}`` (wait forever) where that matters. (Making the
  broker refuse writes with ``min.insync.replicas`` above the replication factor does not
  work on Kafka 4: the broker caps it at the replication factor and accepts the writes.)
"""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from subprocess import Popen

import local_kafka
import orjson
import pytest
from confluent_kafka import Producer
from kafka_job import GroupReader, Record, start_job, stop, tail, write_config

T0 = 1_700_000_000_000
USERS = 40
TIMEOUT_S = 240.0
OUTAGE_S = 20.0
BAD = [
    b"not json",
    b'{"user_id": "x", "ts": 1700000000000, "type": "view"}',
    b'{"user_id": "x", "item_id": "i", "ts": 1700000000000, "type": "hover"}',
    b'{"user_id": "x", "item_id": "i", "ts": 17, "type": "view"}',
    b"\xff\xfe\x00",
    b'{"user_id": ["x"], "item_id": "i", "ts": 1700000000000, "type": "view"}',
    b"",
]


class Stream:
    """Valid events (each user in time order, keyed by user), invalid messages and exact
    duplicates of a user's previous event, mixed at random."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.valid = self.invalid = self.duplicates = 0
        self._last: dict[str, bytes] = {}
        self._index = 0

    def take(self, count: int) -> list[tuple[bytes | None, bytes]]:
        messages = []
        for _ in range(count):
            roll = self.rng.random()
            if roll < 0.08:
                messages.append((None, self.rng.choice(BAD)))
                self.invalid += 1
            elif roll < 0.1 and self._last:
                user = self.rng.choice(sorted(self._last))
                messages.append((user.encode(), self._last[user]))
                self.duplicates += 1
            else:
                user = f"u{self.rng.randrange(USERS)}"
                self._index += 1
                value = orjson.dumps(
                    {
                        "user_id": user,
                        "item_id": f"i{self.rng.randrange(60)}",
                        "ts": T0 + self._index * 60_000,
                        "type": self.rng.choice(["view", "click", "purchase"]),
                        "event_id": f"e{self._index}",
                    }
                )
                self._last[user] = value
                messages.append((user.encode(), value))
                self.valid += 1
        return messages

    @property
    def dead_letters(self) -> int:
        return self.invalid + self.duplicates


def _produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for key, value in messages:
        producer.produce(topic, value, key=key)
        producer.poll(0)
    assert producer.flush(60) == 0, "messages left unsent"


def _lists(records: list[Record]) -> Counter[tuple[str, int]]:
    return Counter((record.json()["user_id"], record.json()["version"]) for record in records)


def _input_letters(records: list[Record]) -> list[dict]:
    """Dead letters of input messages (Kafka's own errors carry no offset of a message)."""
    letters = [record.json() for record in records]
    return [letter for letter in letters if letter.get("offset", -1) >= 0]


def _check_nothing_lost(
    stream: Stream,
    lists: GroupReader,
    letters: GroupReader,
    log: Path,
    earlier: Sequence[Record] = (),
) -> None:
    """Read until every valid event's list (``earlier`` ones included) and every dead letter
    is in; then check that nothing is missing, extra or moved. ``log``: the job's, shown when
    the lists do not all come."""

    def all_lists(records: list[Record]) -> bool:
        return len(_lists([*earlier, *records])) >= stream.valid

    try:
        lists.read_until(all_lists, TIMEOUT_S, f"{stream.valid} lists")
        letters.read_until(
            lambda records: len(_input_letters(records)) >= stream.dead_letters,
            TIMEOUT_S,
            f"{stream.dead_letters} dead letters",
        )
    except AssertionError as error:
        # Once (in four full runs of the suite one day, that one twice as slow as the others)
        # lists were still missing 240 s after the broker's outage, a test of 30 s alone: say
        # how many came and what the job logged.
        seen = len(_lists([*earlier, *lists.records]))
        raise AssertionError(f"{error} ({seen} seen); the job's log ends:\n{tail(log)}") from None
    lists.poll(1.0)
    letters.poll(1.0)
    distinct = _lists([*earlier, *lists.records])
    versions: dict[str, list[int]] = {}
    for user, version in sorted(distinct):
        versions.setdefault(user, []).append(version)
    # Every valid event has its list: versions 1..n for each user, nothing missing or extra.
    assert all(found == list(range(1, len(found) + 1)) for found in versions.values())
    assert len(distinct) == stream.valid
    input_letters = _input_letters(letters.records)
    # The dead-letter sink is at-least-once too: a letter resent after an outage is one letter.
    by_position = {(letter["partition"], letter["offset"]): letter for letter in input_letters}
    assert len(by_position) == stream.dead_letters, "a dead letter is missing"
    reasons = Counter(letter["reason"].split(" ")[0] for letter in by_position.values())
    assert reasons["duplicate"] == stream.duplicates
    print(
        f"\n{stream.valid + stream.dead_letters} events in: {stream.valid} processed (lists), "
        f"{stream.dead_letters} dead-lettered ({stream.invalid} invalid, "
        f"{stream.duplicates} duplicates), 0 lost; {sum(distinct.values()) - len(distinct)} "
        f"lists and {len(input_letters) - len(by_position)} dead letters repeated, "
        f"{len(letters.records) - len(input_letters)} Kafka-error letters"
    )


@contextmanager
def _running_job(
    tmp_path: Path, bootstrap: str, events: str, out: str, dead: str
) -> Iterator[tuple[Popen[bytes], Path]]:
    """The live job (every event its own window) with recovery on, and its log; stopped after."""
    config = write_config(
        tmp_path / "config.yaml",
        bootstrap,
        events,
        out,
        dead,
        tail=True,
        batch_size=100,
        overrides={"window": {"length_s": 0}},
    )
    log = tmp_path / "job.log"
    job = start_job(config, log, "--recovery-dir", str(tmp_path / "store"), "--metrics-port", "0")
    try:
        yield job, log
    finally:
        stop(job)


def test_a_mixed_stream_over_three_partitions_is_processed_or_dead_lettered_exactly(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    events, out, dead = kafka_topic(partitions=3), kafka_topic(), kafka_topic()
    stream = Stream(seed=1)
    _produce(kafka_bootstrap, events, stream.take(3000))
    with (
        closing(GroupReader(kafka_bootstrap, out)) as lists,
        closing(GroupReader(kafka_bootstrap, dead)) as letters,
        _running_job(tmp_path, kafka_bootstrap, events, out, dead) as (job, log),
    ):
        _check_nothing_lost(stream, lists, letters, log)
        assert job.poll() is None, f"the job stopped:\n{tail(log)}"


@pytest.fixture
def own_broker() -> Iterator[local_kafka.LocalKafka]:
    """A broker of this test alone, so that stopping it disturbs no other test."""
    try:
        broker = local_kafka.start()
    except local_kafka.LocalKafkaError as error:
        pytest.fail(f"the local Kafka broker could not start: {error}", pytrace=False)
    try:
        yield broker
    finally:
        broker.stop()


def test_the_broker_stopped_for_20_s_mid_stream_and_restarted_loses_nothing(
    own_broker: local_kafka.LocalKafka, tmp_path: Path
) -> None:
    bootstrap = own_broker.bootstrap
    events, out, dead = "events", "lists", "dead"
    local_kafka.create_topic(bootstrap, events, partitions=3)
    local_kafka.create_topic(bootstrap, out)
    local_kafka.create_topic(bootstrap, dead)
    stream = Stream(seed=2)
    _produce(bootstrap, events, stream.take(3000))
    with (
        closing(GroupReader(bootstrap, out)) as lists,
        closing(GroupReader(bootstrap, dead)) as letters,
        _running_job(tmp_path, bootstrap, events, out, dead) as (job, log),
    ):
        lists.read_until(lambda records: len(records) >= 50, TIMEOUT_S, "the first lists")
        print(f"\nbroker stopped with {len(lists.records)} of {stream.valid} lists read")
        own_broker.halt()
        stopped = time.monotonic()
        while time.monotonic() - stopped < OUTAGE_S:
            time.sleep(1.0)
            assert job.poll() is None, f"the job stopped with the broker:\n{tail(log)}"
        own_broker.resume()
        # More input after the outage: the job must be consuming again, not only flushing.
        _produce(bootstrap, events, stream.take(1000))
        _check_nothing_lost(stream, lists, letters, log)
        assert job.poll() is None, f"the job stopped:\n{tail(log)}"


def test_an_output_topic_deleted_for_20_s_and_recreated_makes_the_job_wait_and_loses_nothing(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    events, out, dead = kafka_topic(partitions=3), kafka_topic(), kafka_topic()
    stream = Stream(seed=3)
    _produce(kafka_bootstrap, events, stream.take(500))
    before, letters = GroupReader(kafka_bootstrap, out), GroupReader(kafka_bootstrap, dead)
    after = None
    try:
        with _running_job(tmp_path, kafka_bootstrap, events, out, dead) as (job, log):
            before.read_until(
                lambda records: len(_lists(records)) >= stream.valid, TIMEOUT_S, "the first lists"
            )
            before.close()
            local_kafka.delete_topic(kafka_bootstrap, out)
            _produce(kafka_bootstrap, events, stream.take(500))
            time.sleep(OUTAGE_S)
            assert job.poll() is None, f"the job stopped without its output topic:\n{tail(log)}"
            local_kafka.create_topic(kafka_bootstrap, out)
            after = GroupReader(kafka_bootstrap, out)
            # The deleted topic took its lists with it: they were read before.
            _check_nothing_lost(stream, after, letters, log, earlier=before.records)
            assert after.records, "no list was held back while the topic was missing"
            assert job.poll() is None, f"the job stopped:\n{tail(log)}"
    finally:
        letters.close()
        if after is not None:
            after.close()
