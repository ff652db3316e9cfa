"""``streamrec tail`` against the local Kafka: the newest list per user, repeats dropped,
tombstones honoured, then new lists as they arrive; and the documented example consumer
(``examples/consumer.py``) against the same broker."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Consumer, Producer
from kafka_job import ENTRY_POINT, ROOT, write_config

from dataflows import cli

sys.path.insert(0, str(ROOT / "examples"))  # a script directory, not a package

import consumer as example_consumer

WAIT_S = 60.0


def _list(user: str, version: int) -> bytes:
    items = [{"item_id": f"i{version}", "score": 1.5, "because": "trending"}]
    document = {"user_id": user, "items": items, "as_of": 0, "version": version, "model": "m"}
    return orjson.dumps(document)


def _send(bootstrap: str, topic: str, messages: list[tuple[str, bytes | None]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for user, value in messages:
        producer.produce(topic, value, key=user.encode())
    assert producer.flush(30) == 0


def _lines(process: subprocess.Popen[bytes], count: int) -> list[dict]:
    assert process.stdout is not None
    lines: list[dict] = []
    deadline = time.monotonic() + WAIT_S
    while len(lines) < count:
        assert time.monotonic() < deadline, f"only {lines} in {WAIT_S:.0f} s"
        if select.select([process.stdout], [], [], 0.5)[0]:
            lines.append(orjson.loads(process.stdout.readline()))
    return lines


def test_tail_prints_the_newest_list_per_user_then_follows(
    kafka_bootstrap: str,
    kafka_topic: Callable[..., str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = kafka_topic(partitions=2)
    config = write_config(tmp_path / "c.yaml", kafka_bootstrap, "e", out, "d", tail=True)
    _send(
        kafka_bootstrap,
        out,
        [
            ("u1", _list("u1", 1)),
            ("u1", _list("u1", 2)),
            ("u1", _list("u1", 1)),  # sent again after a restart of the job
            ("u2", _list("u2", 1)),
            ("u3", _list("u3", 1)),
            ("u3", None),  # u3 was forgotten
            ("u4", b"not json"),
        ],
    )
    assert cli.main(["tail", "-c", str(config)]) == 0
    printed = capsys.readouterr()
    assert printed.out.splitlines() == [
        "u1  version 2  as of 1970-01-01 00:00:00 UTC  (m)",
        "   1. i2  score 1.500  because trending",
        "u2  version 1  as of 1970-01-01 00:00:00 UTC  (m)",
        "   1. i1  score 1.500  because trending",
    ]
    assert "1 unreadable messages skipped" in printed.err

    assert cli.main(["tail", "-c", str(config), "--user", "u1", "--json"]) == 0
    (only,) = capsys.readouterr().out.splitlines()
    assert orjson.loads(only)["version"] == 2

    follower = subprocess.Popen(
        [sys.executable, "-c", ENTRY_POINT, "tail", "-c", str(config), "--follow", "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        bufsize=0,  # unbuffered: select() sees every line that is not read yet
    )
    try:
        assert sorted(line["user_id"] for line in _lines(follower, 2)) == ["u1", "u2"]
        _send(kafka_bootstrap, out, [("u1", _list("u1", 2)), ("u1", _list("u1", 3))])
        _send(kafka_bootstrap, out, [("u2", None)])
        (newer, forgotten) = _lines(follower, 2)
        assert (newer["user_id"], newer["version"]) == ("u1", 3), "the repeat of v2 is dropped"
        assert forgotten == {"user_id": "u2", "tombstone": True}
        follower.send_signal(signal.SIGINT)
        assert follower.wait(timeout=30) == 0
    finally:
        follower.kill()
        follower.wait()


def test_the_example_consumer_keeps_the_newest_list_per_user(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], capsys: pytest.CaptureFixture[str]
) -> None:
    topic = kafka_topic(partitions=2)
    _send(
        kafka_bootstrap,
        topic,
        [
            ("u1", _list("u1", 1)),
            ("u1", _list("u1", 2)),
            ("u1", _list("u1", 1)),  # a repeat after a restart of the job: ignored
            ("u2", _list("u2", 4)),
            ("u2", None),  # u2 forgotten
            ("u3", _list("u3", 7)),
            ("u3", None),
            ("u3", _list("u3", 1)),  # back after being forgotten: version 1 again
        ],
    )
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"example-{topic}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([topic])
    latest: dict[str, dict] = {}
    try:
        example_consumer.run(consumer, latest, idle_polls=3)
    finally:
        consumer.close()
    assert {user: record["version"] for user, record in latest.items()} == {"u1": 2, "u3": 1}
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 7, "every message but the repeat changed what is held"
