"""``streamrec tail``: read the output topic the way a consumer should, and print it readably.

A consumer of ``streamrec.recommendations`` keeps the newest list per user: delivery is
at-least-once, so after a restart of the job lists come again with versions already seen, and
a null value (a tombstone) means the user was forgotten or their state expired (their next
list starts again at version 1). :class:`LatestLists` is that rule:

>>> latest = LatestLists()
>>> first = b'{"user_id": "u1", "items": [], "as_of": 0, "version": 1, "model": "streamrec"}'
>>> latest.offer(b"u1", first)["version"]
1
>>> latest.offer(b"u1", first) is None  # the same version again: a repeat, dropped
True
>>> latest.offer(b"u1", None)
Forgotten(user_id='u1')
>>> latest.offer(b"u1", first)["version"]  # a forgotten user starts over at version 1
1

``streamrec tail`` reads every partition from the beginning (no consumer group, nothing
committed) to the end the topic had when it started, prints the newest list of each user by
user id (or of ``--user``), and with ``--follow`` then prints each new list as it arrives until
Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from dataflows.errors import UsageError, load_config_or_stop
from operators.config import Config, KafkaTopic

#: How long to wait for the broker's metadata and for each poll.
METADATA_TIMEOUT_S = 10.0
POLL_S = 0.5


@dataclass(frozen=True)
class Forgotten:
    """A tombstone: the user was forgotten, or their state expired in the job."""

    user_id: str


Update = dict[str, Any] | Forgotten


class LatestLists:
    """The newest list per user; repeats (a version already seen) are dropped."""

    def __init__(self) -> None:
        self.lists: dict[str, dict[str, Any]] = {}
        self.unreadable = 0

    def offer(self, key: bytes | None, value: bytes | None) -> Update | None:
        """The update this message brings, or None for a repeat or an unreadable message."""
        if value is None:
            user_id = (key or b"").decode(errors="replace")
            self.lists.pop(user_id, None)
            return Forgotten(user_id)
        try:
            record = orjson.loads(value)
            user_id, version = record["user_id"], record["version"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            self.unreadable += 1
            return None
        known = self.lists.get(user_id)
        if known is not None and known["version"] >= version:
            return None
        self.lists[user_id] = record
        return record


def render(update: Update) -> str:
    """A list as a person reads it: user, version, time, then one item per line.

    >>> print(render({"user_id": "u1", "version": 3, "as_of": 1291191960000, "model": "m",
    ...               "items": [{"item_id": "85123A", "score": 1.93, "because": "22423"}]}))
    u1  version 3  as of 2010-12-01 08:26:00 UTC  (m)
       1. 85123A  score 1.930  because 22423
    >>> render(Forgotten("u1"))
    'u1  no list (tombstone: forgotten or expired)'
    """
    if isinstance(update, Forgotten):
        return f"{update.user_id}  no list (tombstone: forgotten or expired)"
    moment = datetime.fromtimestamp(update["as_of"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    lines = [
        f"{update['user_id']}  version {update['version']}  as of {moment} UTC  "
        f"({update.get('model', '?')})"
    ]
    for rank, item in enumerate(update.get("items", []), start=1):
        because = f"  because {item['because']}" if item.get("because") else ""
        lines.append(f"  {rank:>2}. {item['item_id']}  score {item['score']:.3f}{because}")
    return "\n".join(lines)


def output_topic(config: Config) -> str:
    if not isinstance(config.output, KafkaTopic):
        raise UsageError("the config's output is not a Kafka topic: nothing to tail")
    return config.output.topic


class TopicReader:
    """Every partition of one topic from the beginning, without a consumer group."""

    def __init__(self, config: Config, topic: str) -> None:
        brokers = ",".join(config.kafka.brokers)
        self._consumer = Consumer(
            {
                "bootstrap.servers": brokers,
                "group.id": "streamrec-tail",  # required by librdkafka; nothing is committed
                "enable.auto.commit": False,
                "log_level": 0,
                **config.kafka.client_config(),
            }
        )
        try:
            metadata = self._consumer.list_topics(topic, timeout=METADATA_TIMEOUT_S)
        except KafkaException as error:
            raise UsageError(f"cannot reach Kafka at {brokers} ({error.args[0].str()})") from None
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise UsageError(f"Kafka at {brokers} has no topic {topic}")
        partitions = [TopicPartition(topic, index, OFFSET_BEGINNING) for index in found.partitions]
        #: The end offset of each partition when reading began.
        self.ends = {
            part.partition: self._consumer.get_watermark_offsets(part, METADATA_TIMEOUT_S)[1]
            for part in partitions
        }
        self._consumer.assign(partitions)
        self._next = {partition: 0 for partition in self.ends}

    def caught_up(self) -> bool:
        """Whether every partition was read to the end it had when reading began."""
        return all(self._next[partition] >= end for partition, end in self.ends.items())

    def messages(self) -> Iterator[tuple[bytes | None, bytes | None]]:
        """(key, value) of each message as it arrives; yields (None, None) when idle."""
        while True:
            message = self._consumer.poll(POLL_S)
            if message is None:
                yield None, None
                continue
            if message.error() is not None:
                raise UsageError(f"reading {message.topic()}: {message.error().str()}")
            self._next[message.partition()] = message.offset() + 1
            yield message.key(), message.value()

    def close(self) -> None:
        self._consumer.close()


def tail(
    reader: TopicReader, user: str | None, follow: bool, as_json: bool, out: TextIO
) -> LatestLists:
    """Print the newest list per user once caught up, then (``follow``) every new one."""
    latest = LatestLists()
    wanted = None if user is None else user.encode()
    caught_up = reader.caught_up()
    if caught_up and not follow:
        return latest
    for key, value in reader.messages():
        if key is not None or value is not None:
            update = latest.offer(key, value) if wanted in (None, key) else None
            if caught_up and update is not None:
                _show(update, as_json, out)
        if not caught_up and reader.caught_up():
            caught_up = True
            for _user, record in sorted(latest.lists.items()):
                _show(record, as_json, out)
            if not follow:
                return latest
    return latest


def _show(update: Update, as_json: bool, out: TextIO) -> None:
    if as_json:
        value = (
            {"user_id": update.user_id, "tombstone": True}
            if isinstance(update, Forgotten)
            else update
        )
        out.write(orjson.dumps(value).decode() + "\n")
    else:
        out.write(render(update) + "\n")
    out.flush()


def main(args: argparse.Namespace) -> int:
    from dataflows.recommend import DEFAULT_CONFIG

    config = load_config_or_stop(Path(args.config or DEFAULT_CONFIG))
    reader = TopicReader(config, output_topic(config))
    try:
        latest = tail(reader, args.user, args.follow, args.json, sys.stdout)
    except KeyboardInterrupt:
        return 0
    finally:
        reader.close()
    if latest.unreadable:
        print(f"streamrec tail: {latest.unreadable} unreadable messages skipped", file=sys.stderr)
    return 0
