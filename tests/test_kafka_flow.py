"""The live job through real Kafka: events in, lists out, bad input dead-lettered, job alive,
Prometheus metrics served, processed offsets committed to the job's consumer group."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path

from bytewax.testing import run_main
from confluent_kafka import Consumer, TopicPartition
from kafka_job import (
    GroupReader,
    Record,
    event,
    free_ports,
    lists_by_user,
    produce,
    start_job,
    stop,
    tail,
    write_config,
)

from dataflows.recommend import build_flow
from operators.config import load_config

T0 = 1_700_000_000_000
MINUTE = 60_000
TIMEOUT_S = 120.0


def _has_versions(wanted: dict[str, int]) -> Callable[[list[Record]], bool]:
    def done(records: list[Record]) -> bool:
        lists = lists_by_user(records)
        return all(len(lists.get(user, [])) >= count for user, count in wanted.items())

    return done


def _live_config(
    tmp_path: Path,
    bootstrap: str,
    events: str,
    out: str,
    dead: str,
    overrides: Mapping[str, Mapping[str, object]] | None = None,
) -> Path:
    """A tailing job whose idle windows close after a second, as a live job's do."""
    path = tmp_path / "config.yaml"
    return write_config(
        path, bootstrap, events, out, dead, tail=True, close_after_idle_s=1.0, overrides=overrides
    )


def test_lists_come_out_and_bad_input_is_dead_lettered_while_the_job_keeps_running(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    events, out, dead = kafka_topic(partitions=2), kafka_topic(), kafka_topic()
    # A user's one-minute window is served when their next event comes or after a second idle.
    config = _live_config(tmp_path, kafka_bootstrap, events, out, dead)
    log = tmp_path / "job.log"
    (port,) = free_ports(1)
    job = start_job(
        config, log, "--recovery-dir", str(tmp_path / "recovery"), "--metrics-port", str(port)
    )
    lists = GroupReader(kafka_bootstrap, out)
    letters = GroupReader(kafka_bootstrap, dead)
    try:
        first = [
            event("alice", "lamp", T0),
            event("bob", "lamp", T0 + MINUTE),
            event("bob", "shade", T0 + 2 * MINUTE),
            event("alice", "bulb", T0 + 3 * MINUTE, "view"),
        ]
        produce(kafka_bootstrap, events, first)
        lists.read_until(_has_versions({"alice": 2, "bob": 2}), TIMEOUT_S, "lists for alice, bob")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert 'step_id="streamrec.admit' in metrics, "no Prometheus metrics of the flow's steps"

        malformed = [b'{"user_id": "carol", "ts": 1700000000000, "type": "click"}', b"not json"]
        produce(kafka_bootstrap, events, malformed)
        letters.read_until(lambda records: len(records) == 2, TIMEOUT_S, "two dead letters")
        assert job.poll() is None, f"the job stopped on bad input:\n{tail(log)}"

        later = [event("carol", "bulb", T0 + 4 * MINUTE), event("bob", "bulb", T0 + 5 * MINUTE)]
        produce(kafka_bootstrap, events, later)
        lists.read_until(_has_versions({"carol": 1, "bob": 3}), TIMEOUT_S, "lists after them")
        assert job.poll() is None, f"the job stopped:\n{tail(log)}"
    finally:
        stop(job)
        lists.close()
        letters.close()

    by_user = lists_by_user(lists.records)
    assert set(by_user) == {"alice", "bob", "carol"}
    assert [item["version"] for item in by_user["bob"]] == [1, 2, 3]
    assert [item["version"] for item in by_user["alice"]] == [1, 2]
    assert [item["as_of"] for item in by_user["bob"]] == [
        T0 + MINUTE,
        T0 + 2 * MINUTE,
        T0 + 5 * MINUTE,
    ]
    seen = {"alice": {"lamp", "bulb"}, "bob": {"lamp", "shade", "bulb"}, "carol": {"bulb"}}
    for user, user_lists in by_user.items():
        final = [item["item_id"] for item in user_lists[-1]["items"]]
        assert len(final) <= 10
        assert not seen[user] & set(final), f"{user} was recommended an item they already have"
    assert by_user["carol"][0]["items"], "a new user gets trending items, not an empty list"

    # The two partitions may deliver the two bad messages in either order.
    reasons = {letter["raw"]: letter for letter in (record.json() for record in letters.records)}
    assert reasons.keys() == {raw.decode() for raw in malformed}
    missing_item = reasons[malformed[0].decode()]
    assert missing_item["reason"] == 'missing field "item_id"'
    assert missing_item["topic"] == events
    assert missing_item["partition"] in (0, 1)
    assert missing_item["offset"] >= 0
    assert reasons["not json"]["reason"]


def test_the_job_commits_what_it_processed_to_its_consumer_group(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    events, out, dead = kafka_topic(partitions=2), kafka_topic(), kafka_topic()
    group = f"streamrec-{events}"
    sent = [event(f"user{n % 7}", f"item{n % 11}", T0 + n * MINUTE) for n in range(40)]
    produce(kafka_bootstrap, events, [*sent, b"not json"])
    config = write_config(
        tmp_path / "config.yaml",
        kafka_bootstrap,
        events,
        out,
        dead,
        tail=False,
        batch_size=5,
        overrides={"kafka": {"group_id": group}},
    )
    run_main(build_flow(load_config(config)))

    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": group})
    try:
        parts = [TopicPartition(events, partition) for partition in (0, 1)]
        committed = {part.partition: part.offset for part in consumer.committed(parts, 10)}
        ends = {
            part.partition: consumer.get_watermark_offsets(part, timeout=10)[1] for part in parts
        }
    finally:
        consumer.close()
    assert sum(ends.values()) == 41
    assert committed == ends, "the group's committed offsets are not the topic's end"


def test_an_idle_users_list_is_refreshed_then_tombstoned_at_expiry_and_restarts_at_version_1(
    kafka_bootstrap: str, kafka_topic: Callable[..., str], tmp_path: Path
) -> None:
    events, out, dead = kafka_topic(), kafka_topic(), kafka_topic()
    # Served 1 s after dana's last event, refreshed 2 and 4 s after it, expired at 6 s.
    timers = {"window": {"refresh_idle_s": 1.0}, "state": {"user_idle_expire_s": 6.0}}
    config = _live_config(tmp_path, kafka_bootstrap, events, out, dead, timers)
    log = tmp_path / "job.log"
    job = start_job(config, log, "--recovery-dir", str(tmp_path / "recovery"))
    lists = GroupReader(kafka_bootstrap, out)

    def dana(records: list[Record]) -> list[int | None]:
        """Dana's versions in order, None for a tombstone."""
        return [
            None if record.value is None else record.json()["version"]
            for record in records
            if record.key == b"dana"
        ]

    try:
        produce(kafka_bootstrap, events, [event("dana", "lamp", T0)])
        lists.read_until(lambda records: None in dana(records), TIMEOUT_S, "dana's tombstone")
        produce(kafka_bootstrap, events, [event("dana", "bulb", T0 + MINUTE)])
        lists.read_until(lambda records: dana(records)[-1] == 1, TIMEOUT_S, "dana's new list")
        assert job.poll() is None, f"the job stopped:\n{tail(log)}"
    finally:
        stop(job)
        lists.close()

    assert dana(lists.records)[:5] == [1, 2, 3, None, 1]
    mine = [record for record in lists.records if record.key == b"dana"]
    assert {record.json()["as_of"] for record in mine[:3]} == {T0}, "the same history, again"
    assert mine[4].json()["as_of"] == T0 + MINUTE
