"""Test helpers: run ``streamrec run`` as real processes (against the local broker, or as a
multi-process cluster over files), and read its topics through a consumer group the way a
downstream service would."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import orjson
import yaml
from confluent_kafka import Consumer, Producer, TopicPartition

from dataflows.replay import free_ports

ROOT = Path(__file__).resolve().parent.parent
#: What the installed ``streamrec`` console script runs.
ENTRY_POINT = "import sys; from dataflows.cli import main; sys.exit(main(sys.argv[1:]))"


@dataclass(frozen=True)
class Record:
    """One message read back from a topic."""

    key: bytes | None
    value: bytes | None

    def json(self) -> dict:
        assert self.value is not None
        return orjson.loads(self.value)


def write_config(
    path: Path,
    bootstrap: str,
    events: str,
    out: str,
    dead: str,
    *,
    tail: bool,
    snapshot_interval_s: int = 1,
    batch_size: int = 1000,
    close_after_idle_s: float | None = None,
    overrides: Mapping[str, Mapping[str, object]] | None = None,
) -> Path:
    """A job config for one test: its own topics, live timers off so runs are comparable
    (unless ``close_after_idle_s`` closes idle windows, as a live job does). ``overrides``
    replaces keys within sections, e.g. ``{"window": {"length_s": 0}}``."""
    config = {
        "kafka": {"brokers": [bootstrap]},
        "input": {"kafka": {"topic": events, "tail": tail, "batch_size": batch_size}},
        "output": {"kafka": {"topic": out}},
        "dead_letter": {"kafka": {"topic": dead}},
        "window": {"close_after_idle_s": close_after_idle_s},
        "state": {"user_idle_expire_s": None},
        "recovery": {"snapshot_interval_s": snapshot_interval_s},
    }
    for section, values in (overrides or {}).items():
        config[section] = {**config.get(section, {}), **values}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def start_job(config: Path, log: Path, *args: str) -> subprocess.Popen[bytes]:
    """``streamrec run -c config ARGS`` in the background; its output goes to ``log``."""
    with log.open("ab") as sink:
        return subprocess.Popen(
            [sys.executable, "-c", ENTRY_POINT, "run", "-c", str(config), *args],
            cwd=ROOT,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )


def wait_exit(job: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    """Wait for a job that stops at the end of its input; fail with its log otherwise."""
    try:
        code = job.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        job.kill()
        job.wait()
        raise AssertionError(f"job still running after {timeout_s:.0f} s:\n{tail(log)}") from None
    assert code == 0, f"job exited with {code}:\n{tail(log)}"


def stop(job: subprocess.Popen[bytes]) -> None:
    if job.poll() is None:
        job.kill()
        job.wait()


def tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def _user_key(value: bytes) -> bytes | None:
    """Key a message by its user, as a real producer would: Kafka keeps order per key."""
    try:
        user = orjson.loads(value).get("user_id")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    return user.encode() if isinstance(user, str) else None


def committed_epoch(directory: Path) -> int:
    """The newest epoch Bytewax has committed to every partition it wrote (0: none yet)."""
    newest = 0
    for path in directory.glob("part-*.sqlite3"):
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
            (epoch,) = db.execute("SELECT MAX(commit_epoch) FROM commits").fetchone()
        newest = max(newest, epoch or 0)
    return newest


def write_file_config(path: Path, events: Path, out: Path, dead: Path) -> Path:
    """A job config over files with the live timers off: the output depends on the events."""
    config = {
        "input": {"file": {"path": str(events)}},
        "output": {"file": {"path": str(out)}},
        "dead_letter": {"file": {"path": str(dead)}},
        "window": {"close_after_idle_s": None},
        "state": {"user_idle_expire_s": None},
        "recovery": {"snapshot_interval_s": 3600},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def run_cluster(config: Path, processes: int, workers: int, logs: Path, timeout_s: float) -> float:
    """Run the job as ``processes`` local processes (``-i``/``-a``) of ``workers`` threads each
    until its input ends; returns the wall-clock seconds."""
    addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(processes))
    cluster: list[str] = []
    started = time.perf_counter()
    jobs = []
    for index in range(processes):
        if processes > 1:
            cluster = ["-i", str(index), "-a", addresses]
        options = ["--no-recovery", "--metrics-port", "0", "-w", str(workers), *cluster]
        log = logs / f"process-{index}.log"
        jobs.append((start_job(config, log, *options), log))
    try:
        for job, log in jobs:
            wait_exit(job, log, timeout_s)
    finally:
        for job, _log in jobs:
            stop(job)
    return time.perf_counter() - started


def hit_rate(events: Path, recs: Path, k: int = 10) -> float:
    """HR@k of emitted lists, as ``streamrec evaluate --recs`` reports it."""
    command = ["evaluate", str(events), "--recs", str(recs), "--k", str(k), "--json"]
    result = subprocess.run(
        [sys.executable, "-c", ENTRY_POINT, *command],
        cwd=ROOT,
        capture_output=True,
        check=True,
        timeout=1800,
    )
    document = orjson.loads(result.stdout)
    (scores,) = [value for value in document.values() if f"hr@{k}" in value]
    return float(scores[f"hr@{k}"])


def produce(bootstrap: str, topic: str, values: Iterable[bytes]) -> int:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    count = 0
    for value in values:
        while True:
            try:
                producer.produce(topic, value, key=_user_key(value))
                break
            except BufferError:
                # The local queue holds at most 100,000 messages: wait for deliveries.
                producer.poll(0.1)
        producer.poll(0)
        count += 1
    assert producer.flush(30) == 0, "messages left unsent"
    return count


def event(user: str, item: str, ts: int, kind: str = "purchase") -> bytes:
    return orjson.dumps({"user_id": user, "item_id": item, "ts": ts, "type": kind})


class GroupReader:
    """A consumer in its own consumer group, reading one topic from the beginning."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.records: list[Record] = []
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"streamrec-test-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
                "enable.auto.commit": True,
            }
        )
        self._consumer.subscribe([topic])

    def poll(self, seconds: float) -> list[Record]:
        """Read what arrives within ``seconds``; returns the new records."""
        new: list[Record] = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            message = self._consumer.poll(0.2)
            if message is None:
                continue
            assert message.error() is None, message.error()
            new.append(Record(message.key(), message.value()))
        self.records += new
        return new

    def read_until(
        self, done: Callable[[list[Record]], bool], timeout_s: float, what: str
    ) -> list[Record]:
        deadline = time.monotonic() + timeout_s
        while not done(self.records):
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not seen in {timeout_s:.0f} s on {self.topic}")
            self.poll(0.5)
        return self.records

    def read_all(self, timeout_s: float = 60.0) -> list[Record]:
        """Everything up to the topic's current end (every partition)."""
        metadata = self._consumer.list_topics(self.topic, timeout=10).topics[self.topic]
        ends = {
            partition: self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=10
            )[1]
            for partition in metadata.partitions
        }

        def reached(_records: list[Record]) -> bool:
            positions = self._consumer.position(
                [TopicPartition(self.topic, partition) for partition in ends]
            )
            return all(
                ends[position.partition] == 0 or position.offset >= ends[position.partition]
                for position in positions
            )

        return self.read_until(reached, timeout_s, f"the end {ends}")

    def close(self) -> None:
        self._consumer.close()


def lists_by_user(records: Sequence[Record]) -> dict[str, list[dict]]:
    """Output lists per user in the order they were read (tombstones left out)."""
    lists: dict[str, list[dict]] = {}
    for record in records:
        if record.value is not None:
            value = record.json()
            assert record.key == value["user_id"].encode()
            lists.setdefault(value["user_id"], []).append(value)
    return lists
