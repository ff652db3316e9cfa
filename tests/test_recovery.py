"""Crash test: kill -9 the Kafka-to-Kafka job mid-stream, restart it on the same recovery
directory, and compare with a run that was never interrupted over the same input.

KafkaSource keeps its offsets only in the recovery snapshots and KafkaSink is at-least-once, so
after the restart the job re-reads the input from the last snapshot and re-sends the lists of
those events. They carry the same ``version`` as before the crash: a consumer that keeps the
first list per (user, version) sees exactly the uninterrupted run's lists, and no event is lost.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
from kafka_job import (
    GroupReader,
    Record,
    committed_epoch,
    free_ports,
    produce,
    start_job,
    stop,
    tail,
    wait_exit,
    write_config,
)

# Enough input that the job is still running a few snapshots in, however fast the engine gets.
EVENTS = 30_000
USERS = 300
ITEMS = 400
RUN_TIMEOUT_S = 300.0


def _stream(count: int, seed: int = 11) -> list[bytes]:
    """Users who each favour a few neighbouring items, in time order (minutes apart)."""
    rng = random.Random(seed)
    events = []
    for index in range(count):
        user = rng.randrange(USERS)
        item = (user * 7 + int(rng.expovariate(0.4))) % ITEMS
        kind = rng.choice(["view", "view", "click", "cart", "purchase"])
        record = {
            "user_id": f"u{user}",
            "item_id": f"i{item}",
            "ts": 1_700_000_000_000 + index * 60_000,
            "type": kind,
            "event_id": f"e{index}",
        }
        events.append(orjson.dumps(record))
    return events


def _wait(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.05)


def _keyed(records: list[Record]) -> list[tuple[tuple[str, int], bytes]]:
    out = []
    for record in records:
        assert record.value is not None
        value = record.json()
        out.append(((value["user_id"], value["version"]), record.value))
    return out


Job = tuple[subprocess.Popen[bytes], Path]


def _kill_mid_stream_and_restart(
    start: Callable[[], list[Job]], stores: list[Path], reader: GroupReader
) -> int:
    """Start the job, kill -9 every process once each store has a snapshot and more lists have
    left the job since, restart it and let it finish; returns the lists read before the kill."""
    jobs = start()
    try:
        _wait(
            lambda: (
                min(map(committed_epoch, stores)) >= 2
                or any(job.poll() is not None for job, _ in jobs)
            ),
            RUN_TIMEOUT_S,
            "a committed snapshot",
        )
        reader.poll(0)
        before = len(reader.records)
        reader.read_until(lambda records: len(records) >= before + 100, 60, "lists after it")
        for job, log in jobs:
            assert job.poll() is None, f"the job finished before the kill:\n{tail(log)}"
            job.send_signal(signal.SIGKILL)
        for job, _log in jobs:
            assert job.wait(30) == -signal.SIGKILL
    finally:
        for job, _log in jobs:
            stop(job)
    reader.poll(2.0)
    lists_before_kill = len(reader.records)
    for _job, log in jobs:
        log.write_text(log.read_text() + "\n--- restart ---\n")
    for job, log in start():
        wait_exit(job, log, RUN_TIMEOUT_S)
    return lists_before_kill


def test_kill_9_and_restart_loses_no_event_and_repeats_only_droppable_lists(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    events = kafka_topic()  # one partition: offsets are the stream order
    assert produce(kafka_bootstrap, events, _stream(EVENTS)) == EVENTS

    # The uninterrupted run.
    reference_out = kafka_topic()
    config = write_config(
        tmp_path / "reference.yaml",
        kafka_bootstrap,
        events,
        reference_out,
        kafka_topic(),
        tail=False,
    )
    log = tmp_path / "reference.log"
    job = start_job(
        config, log, "--recovery-dir", str(tmp_path / "reference"), "--metrics-port", "0"
    )
    wait_exit(job, log, RUN_TIMEOUT_S)
    reader = GroupReader(kafka_bootstrap, reference_out)
    reference = _keyed(reader.read_all())
    reader.close()
    assert len({key for key, _ in reference}) == len(reference), "the reference repeats a list"
    assert len(reference) == EVENTS  # every event is its own window and gets a list

    # The same input, killed after a snapshot and a few more lists, then restarted.
    crashed_out = kafka_topic()
    # Small input batches and epochs of several batches, so lists leave the job continuously and
    # the kill lands after lists that no snapshot covers yet.
    config = write_config(
        tmp_path / "crash.yaml",
        kafka_bootstrap,
        events,
        crashed_out,
        kafka_topic(),
        tail=False,
        snapshot_interval_s=2,
        batch_size=50,
    )
    store = tmp_path / "crash-recovery"
    log = tmp_path / "crash.log"
    reader = GroupReader(kafka_bootstrap, crashed_out)

    def start() -> list[Job]:
        options = ("--recovery-dir", str(store), "--metrics-port", "0")
        return [(start_job(config, log, *options), log)]

    lists_before_kill = _kill_mid_stream_and_restart(start, [store], reader)
    crashed = _keyed(reader.read_all())
    reader.close()

    copies = Counter(key for key, _ in crashed)
    repeated = sum(count - 1 for count in copies.values())
    assert lists_before_kill < EVENTS, "the kill came after the end of the stream"
    assert repeated > 0, "no list was sent twice: the kill did not land between snapshots"
    first: dict[tuple[str, int], bytes] = {}
    for key, value in crashed:
        assert first.setdefault(key, value) == value, f"{key} was sent twice with different lists"
    deduplicated = list(first.items())
    lost = len({key for key, _ in reference} - first.keys())
    print(
        f"\nrecovery: {EVENTS} events, {lists_before_kill} lists before kill -9, "
        f"{len(crashed)} lists in all, {repeated} repeated and dropped by (user, version), "
        f"{lost} events lost"
    )
    assert lost == 0
    # Per user, the deduplicated lists are the uninterrupted run's lists in the same order.
    assert _per_user(deduplicated) == _per_user(reference)


def _per_user(keyed: list[tuple[tuple[str, int], bytes]]) -> dict[str, list[bytes]]:
    lists: dict[str, list[bytes]] = {}
    for (user, _version), value in keyed:
        lists.setdefault(user, []).append(value)
    return lists


def test_a_two_process_cluster_resumes_from_partitions_spread_over_its_processes(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    """Each process keeps half the partitions in its own directory (a pod's volume); after both
    are killed the cluster resumes from them together and every event still gets its list."""
    count = 3 * EVENTS  # two processes get through the stream faster
    stream = _stream(count)
    events, out = kafka_topic(), kafka_topic()
    produce(kafka_bootstrap, events, stream)
    config = write_config(
        tmp_path / "config.yaml",
        kafka_bootstrap,
        events,
        out,
        kafka_topic(),
        tail=False,
        snapshot_interval_s=2,
        batch_size=50,
    )
    store = tmp_path / "recovery"
    addresses = ";".join(f"127.0.0.1:{port}" for port in free_ports(2))

    def start() -> list[Job]:
        jobs = []
        for process in range(2):
            log = tmp_path / f"process-{process}.log"
            options = ("--recovery-dir", str(store), "--metrics-port", "0", "-a", addresses)
            jobs.append((start_job(config, log, *options, "-i", str(process)), log))
        return jobs

    reader = GroupReader(kafka_bootstrap, out)
    stores = [store / "process-0", store / "process-1"]
    lists_before_kill = _kill_mid_stream_and_restart(start, stores, reader)
    keys = [key for key, _ in _keyed(reader.read_all())]
    reader.close()

    for first, directory in enumerate(stores):
        held = {path.name for path in directory.glob("part-*.sqlite3")}
        assert held == {f"part-{index}.sqlite3" for index in range(first, 12, 2)}
    per_user = Counter(orjson.loads(value)["user_id"] for value in stream)
    expected = {(user, version) for user, n in per_user.items() for version in range(1, n + 1)}
    print(
        f"\nrecovery, 2 processes: {count} events, {lists_before_kill} lists before kill -9, "
        f"{len(keys)} in all, {len(keys) - len(set(keys))} repeated, "
        f"{len(expected - set(keys))} events lost"
    )
    assert lists_before_kill < count
    assert set(keys) == expected
