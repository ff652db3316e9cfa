"""The live job end to end through a local Kafka broker: throughput, latency, recovery, RSS.

Every figure comes from ``streamrec run -c CONFIG`` processes started the way the tests start
them (``tests/kafka_job.py``), against a broker started here (``deploy/kafka/local_kafka.py``).
Time is measured where a user sees it: from producing an event to consuming, from the output
topic, the list it caused.
"""

from __future__ import annotations

import re
import sqlite3
import statistics
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from subprocess import Popen

import orjson
from confluent_kafka import Consumer, Producer

from dataflows.replay import free_ports
from operators.config import load_config
from operators.synthetic import GeneratorConfig, iter_lines

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy" / "kafka"))

import local_kafka
from kafka_job import produce, start_job, stop, tail, write_config

#: The live job's settings where the bench does not change them.
DEFAULTS = load_config(None)
#: Longest wait for the job to answer anything (start-up included).
ANSWER_TIMEOUT_S = 120.0
#: Older snapshots stay in the store during a bench run, so every epoch can be measured.
KEEP_SNAPSHOTS_S = 24 * 3600
#: A list for every event: the list an event causes is then well defined (``as_of`` = its ts).
LIST_PER_EVENT = {"window": {"length_s": 0}}
T0 = 1_704_067_200_000
_METRIC = re.compile(r"^(\w+)(?:\{[^}]*\})? ([0-9.eE+-]+)$")


class JobError(Exception):
    """The live job stopped or did not answer in time; the message ends with its log."""


@dataclass(frozen=True)
class Topics:
    events: str
    out: str
    dead: str


@dataclass
class Job:
    """A running ``streamrec run`` process and where it keeps its log and recovery store."""

    process: Popen[bytes]
    log: Path
    recovery_dir: Path
    metrics_port: int

    def check(self, what: str) -> None:
        if self.process.poll() is not None:
            raise JobError(
                f"the job exited ({self.process.returncode}) while {what}:\n{tail(self.log, 15)}"
            )

    def rss_bytes(self) -> int:
        """RSS of the job's whole process tree (``streamrec run`` supervises Bytewax as a child)."""
        total, pids = 0, [self.process.pid]
        while pids:
            pid = pids.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except FileNotFoundError:  # ended between the two reads
                continue
            (kilobytes,) = re.findall(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
            total += int(kilobytes) * 1024
            pids.extend(int(child) for child in children)
        return total

    def metric_sums(self) -> dict[str, float]:
        """Every Prometheus sample of the job, summed over its labels."""
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:
            text = response.read().decode()
        sums: dict[str, float] = {}
        for line in text.splitlines():
            match = _METRIC.match(line)
            if match is not None:
                sums[match[1]] = sums.get(match[1], 0.0) + float(match[2])
        return sums


class Arrivals:
    """Consumes an output topic in a thread and notes when each list and tombstone arrived."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.lists: dict[tuple[str, int], float] = {}
        self.tombstones: dict[str, float] = {}
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"streamrec-bench-{uuid.uuid4().hex[:8]}",
                "auto.offset.reset": "earliest",
            }
        )
        self._consumer.subscribe([topic])
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._consume, daemon=True)
        self._thread.start()

    def _consume(self) -> None:
        while not self._stopped.is_set():
            message = self._consumer.poll(0.05)
            if message is None or message.error() is not None:
                continue
            arrived = time.time()
            value = message.value()
            if value is None:
                self.tombstones.setdefault(message.key().decode(), arrived)
            else:
                record = orjson.loads(value)
                self.lists.setdefault((record["user_id"], record["as_of"]), arrived)

    def close(self) -> None:
        self._stopped.set()
        self._thread.join()
        self._consumer.close()


@contextmanager
def broker() -> Iterator[local_kafka.LocalKafka]:
    """A local broker on free ports for the ``with`` block, stopped even on error."""
    running = local_kafka.start()
    try:
        yield running
    finally:
        running.stop()


def new_topics(kafka: local_kafka.LocalKafka, name: str) -> Topics:
    tag = uuid.uuid4().hex[:6]
    topics = Topics(f"bench-{name}-{tag}", f"bench-{name}-{tag}-out", f"bench-{name}-{tag}-dead")
    for topic in (topics.events, topics.out, topics.dead):
        local_kafka.create_topic(kafka.bootstrap, topic)
    return topics


def forget(user: str, ts: int) -> bytes:
    return orjson.dumps({"user_id": user, "ts": ts, "type": "forget_user"})


@contextmanager
def live_job(
    kafka: local_kafka.LocalKafka,
    topics: Topics,
    scratch: Path,
    overrides: Mapping[str, Mapping[str, object]],
) -> Iterator[tuple[Job, Arrivals]]:
    """``streamrec run`` with the default config but for ``overrides``, recovery on, ready
    (it answered a first message), with a consumer of its output."""
    scratch.mkdir(parents=True)
    state = {"user_idle_expire_s": DEFAULTS.state.user_idle_expire_s}
    config = write_config(
        scratch / "config.yaml",
        kafka.bootstrap,
        topics.events,
        topics.out,
        topics.dead,
        tail=True,
        snapshot_interval_s=DEFAULTS.recovery.snapshot_interval_s,
        close_after_idle_s=DEFAULTS.window.close_after_idle_s,
        overrides={
            "state": state,
            "recovery": {"backup_interval_s": KEEP_SNAPSHOTS_S},
            **overrides,
        },
    )
    # The topic serves once a message is in it: only then may the job list its partitions.
    produce(kafka.bootstrap, topics.events, [forget("bench-warm-up", T0)])
    (port,) = free_ports(1)
    recovery_dir = scratch / "recovery"
    log = scratch / "job.log"
    process = start_job(
        config, log, "--recovery-dir", str(recovery_dir), "--metrics-port", str(port)
    )
    job = Job(process, log, recovery_dir, port)
    arrivals = Arrivals(kafka.bootstrap, topics.out)
    try:
        wait_for(job, lambda: "bench-warm-up" in arrivals.tombstones, "starting")
        yield job, arrivals
    finally:
        arrivals.close()
        stop(process)


def wait_for(job: Job, done: Callable[[], bool], what: str, timeout_s: float = ANSWER_TIMEOUT_S):
    deadline = time.monotonic() + timeout_s
    while not done():
        job.check(what)
        if time.monotonic() > deadline:
            raise JobError(f"no answer within {timeout_s:.0f} s while {what}:\n{tail(job.log, 15)}")
        time.sleep(0.01)


def sustained_eps(
    bootstrap: str, topic: str, lines: Sequence[bytes], job: Job, arrivals: Arrivals
) -> float:
    """Events/s from producing a backlog to the job's answer to a forget after its last event."""
    marker = f"bench-end-{uuid.uuid4().hex[:6]}"
    last_ts = orjson.loads(lines[-1])["ts"]
    started = time.time()
    produce(bootstrap, topic, [*lines, forget(marker, last_ts)])
    wait_for(job, lambda: marker in arrivals.tombstones, f"working through {len(lines):,} events")
    return len(lines) / (arrivals.tombstones[marker] - started)


def synthetic_lines(events: int, users: int, seed: int) -> list[bytes]:
    config = GeneratorConfig(users=users, items=max(100, users // 4), events=events, seed=seed)
    return list(iter_lines(config))


def paced(lines: Sequence[bytes], rate: float) -> Iterator[bytes]:
    """``lines`` at ``rate`` per second of wall time (sleeping only when ahead by a few ms)."""
    started = time.perf_counter()
    for index, line in enumerate(lines):
        ahead = started + index / rate - time.perf_counter()
        if ahead > 0.002:
            time.sleep(ahead)
        yield line


def latencies_ms(
    bootstrap: str, topic: str, lines: Sequence[bytes], rate: float, job: Job, arrivals: Arrivals
) -> tuple[list[float], int]:
    """Produce ``lines`` at ``rate``; per event the ms from its produce call to the arrival of
    its list (matched by user and ``as_of``), and how many events got no list."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
    sent: dict[tuple[str, int], float] = {}
    for line in paced(lines, rate):
        record = orjson.loads(line)
        user = record["user_id"]
        sent.setdefault((user, record["ts"]), time.time())
        producer.produce(topic, line, key=user.encode())
        producer.poll(0)
    producer.flush(30)
    with_list = lambda: sum(key in arrivals.lists for key in sent) == len(sent)  # noqa: E731
    try:
        wait_for(job, with_list, "answering the paced events", timeout_s=30)
    except JobError:
        job.check("answering the paced events")  # a job that died is an error, a few misses not
    answered = [
        (arrivals.lists[key] - at) * 1000 for key, at in sent.items() if key in arrivals.lists
    ]
    return answered, len(sent) - len(answered)


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Snapshots:
    """What the recovery store holds per epoch, and Bytewax's own snapshot timings."""

    bytes_per_epoch: list[int]
    seconds_per_epoch: float


def snapshots(job: Job) -> Snapshots:
    """Bytes written per epoch (every partition), and the time the job spent snapshotting: its
    Prometheus ``snapshot`` and ``partd_write`` (state written to SQLite) duration sums."""
    per_epoch: dict[int, int] = {}
    for partition in sorted(job.recovery_dir.glob("part-*.sqlite3")):
        with closing(sqlite3.connect(partition)) as store:
            rows = store.execute(
                "SELECT snap_epoch, SUM(LENGTH(ser_change)) FROM snaps GROUP BY snap_epoch"
            ).fetchall()
        for epoch, size in rows:
            per_epoch[epoch] = per_epoch.get(epoch, 0) + (size or 0)
    if not per_epoch:
        raise JobError(f"no snapshot in {job.recovery_dir}: the job closed no epoch")
    sums = job.metric_sums()
    spent = sum(value for name, value in sums.items() if _is_snapshot_time(name))
    return Snapshots([per_epoch[epoch] for epoch in sorted(per_epoch)], spent / len(per_epoch))


def _is_snapshot_time(name: str) -> bool:
    return name.endswith("_duration_seconds_sum") and ("snapshot" in name or "partd_write" in name)


@dataclass
class RssSeries:
    """RSS of jobs sampled over the same seconds, one series per job name."""

    seconds: list[float] = field(default_factory=list)
    rss_mb: dict[str, list[float]] = field(default_factory=dict)

    def sample(self, at: float, jobs: Mapping[str, Job]) -> None:
        self.seconds.append(at)
        for name, job in jobs.items():
            job.check("sampling RSS")
            self.rss_mb.setdefault(name, []).append(job.rss_bytes() / 2**20)

    def late_slope_mb_per_min(self, name: str) -> float:
        """The RSS trend over the second half of the run."""
        half = len(self.seconds) // 2
        slope, _ = statistics.linear_regression(self.seconds[half:], self.rss_mb[name][half:])
        return slope * 60


def one_time_users(rate: float, seconds: float, per_user: int = 4, items: int = 500) -> list[bytes]:
    """Every user comes, has ``per_user`` events a second apart, and never returns."""
    lines = []
    for index in range(round(rate * seconds)):
        user, visit = divmod(index, per_user)
        record = {
            "user_id": f"once-{user}",
            "item_id": f"i{(user * 7 + visit) % items}",
            "ts": T0 + user * 100 + visit * 1000,
            "type": "view",
        }
        lines.append(orjson.dumps(record))
    return lines


def rss_while_users_go_idle(
    bootstrap: str, topic: str, lines: Sequence[bytes], rate: float, jobs: Mapping[str, Job]
) -> RssSeries:
    """Feed every job's shared input topic at ``rate``, sampling each job's RSS twice a second."""
    series = RssSeries()
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    started = time.perf_counter()
    next_sample = started
    for line in paced(lines, rate):
        producer.produce(topic, line)
        producer.poll(0)
        now = time.perf_counter()
        if now >= next_sample:
            series.sample(now - started, jobs)
            next_sample += 0.5
    producer.flush(30)
    return series
