"""The dataflow end to end, through ``streamrec replay``: accounting, dead letters, determinism,
forgetting, the output schema, and equality with the sequential engine."""

from __future__ import annotations

import json
import threading
import time
from multiprocessing import Pipe
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
import yaml

from dataflows.cli import main as cli
from dataflows.replay import Progress, _follow
from operators import jsonl, synthetic
from operators.config import Config, config_from_mapping
from operators.engine import Engine
from operators.evaluation import prequential, read_emitted
from operators.events import Event, parse_event
from operators.tally import Tally

SCHEMA = Path(__file__).resolve().parents[1] / "deploy" / "schema" / "recommendation.schema.json"
T0 = 1_700_000_000_000
MINUTE = 60_000


def event(user: str, item: str, minute: float, **extra: Any) -> bytes:
    record = {"user_id": user, "item_id": item, "ts": T0 + int(minute * MINUTE), "type": "view"}
    record.update(extra)
    return orjson.dumps(record)


def forget(user: str, minute: float) -> bytes:
    return orjson.dumps({"user_id": user, "ts": T0 + int(minute * MINUTE), "type": "forget_user"})


def write_lines(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def replay(
    capsys: pytest.CaptureFixture[str],
    events: Path,
    tmp_path: Path,
    *extra: str,
    config: str = "",
    name: str = "recs",
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """Run ``streamrec replay --json``; returns the summary, the lists and the dead letters."""
    out = tmp_path / f"{name}.jsonl"
    dead = tmp_path / f"{name}.dead.jsonl"
    argv = ["replay", str(events), "--out", str(out), "--dead-letter", str(dead), "--json"]
    if config:
        config_path = tmp_path / f"{name}.yaml"
        config_path.write_text(config)
        argv += ["-c", str(config_path)]
    capsys.readouterr()
    assert cli([*argv, *extra]) == 0
    summary = json.loads(capsys.readouterr().out)
    lists = [json.loads(line) for line in out.read_text().splitlines()]
    letters = [json.loads(line) for line in dead.read_text().splitlines()]
    return summary, lists, letters


@pytest.fixture(scope="module")
def synthetic_events(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("synthetic") / "events.jsonl"
    config = synthetic.GeneratorConfig(users=60, items=80, events=3_000, seed=7, categories=5)
    synthetic.write_stream(config, path)
    return path


def test_bad_input_is_dead_lettered_with_reason_and_line_and_everything_adds_up(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = [
        event("u1", "a", 0, event_id="e1"),  # 1
        b'{"user_id": "u1", "item_id": "b", "ts": ',  # 2 broken JSON
        orjson.dumps({"user_id": "u2", "ts": T0, "type": "view"}),  # 3 missing item_id
        event("u2", "b", 1, title="x" * 600),  # 4 over the size limit
        orjson.dumps({"user_id": "u2", "item_id": "b", "ts": T0, "type": "hover"}),  # 5
        event("u1", "b", 120, event_id="e2"),  # 6
        event("u1", "c", 10),  # 7 late by 110 minutes: more than allowed
        event("u1", "d", 90),  # 8 late by 30 minutes: processed, counted late
        event("u1", "e", 121, event_id="e1"),  # 9 duplicate
        b"",  # blank lines are not events
        event("u2", "a", 130),  # 11
    ]
    events = write_lines(tmp_path / "events.jsonl", lines)
    config = "limits: {max_message_bytes: 500}\nwindow: {allowed_lateness_s: 3600}\n"
    summary, lists, letters = replay(capsys, events, tmp_path, config=config)

    assert summary["events_in"] == 10
    assert summary["processed"] == 4
    assert summary["dead_lettered"] == 6
    assert summary["late"] == 1
    assert summary["events_in"] == summary["processed"] + summary["dead_lettered"]
    assert summary["dead_letters_by_reason"] == {
        "unparseable": 1,
        "invalid": 2,
        "oversize": 1,
        "duplicate": 1,
        "late": 1,
        "kafka_error": 0,
    }
    assert summary["users"] == 2
    # One list per one-minute window: u1's first window closes when event 6 arrives, the one
    # event 6 opened (the late event 8 joined it) at the end of the input, as does u2's.
    assert summary["lists_out"] == len(lists) == 3
    versions = sorted((emitted["user_id"], emitted["version"]) for emitted in lists)
    assert versions == [("u1", 1), ("u1", 2), ("u2", 1)]
    reasons = {letter["line"]: letter["reason"] for letter in letters}
    assert all(letter["source"] == str(events) for letter in letters)
    assert reasons[2].startswith("invalid JSON")
    assert reasons[3] == 'missing field "item_id"'
    assert reasons[4].startswith("message of ") and reasons[4].endswith("over the limit of 500")
    assert reasons[5].startswith('unknown type "hover"')
    assert reasons[7] == "late by 6600 s (allowed 3600 s)"
    assert reasons[9] == "duplicate event_id e1"
    assert set(reasons) == {2, 3, 4, 5, 7, 9}
    by_line = {letter["line"]: letter for letter in letters}
    assert by_line[2]["raw"] == lines[1].decode()
    assert by_line[7]["raw"] == lines[6].decode()


def test_accounting_adds_up_with_windows_and_several_workers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, synthetic_events: Path
) -> None:
    config = "window: {length_s: 600}\n"
    one, lists, _ = replay(capsys, synthetic_events, tmp_path, config=config, name="one")
    two, lists_two, _ = replay(
        capsys, synthetic_events, tmp_path, "-w", "2", config=config, name="two"
    )
    for summary in (one, two):
        assert summary["events_in"] == 3_000
        assert summary["events_in"] == summary["processed"] + summary["dead_lettered"]
    assert 0 < one["lists_out"] < one["processed"], "windows group events"
    assert one["lists_out"] == two["lists_out"]

    def requests(emitted: list[dict[str, Any]]) -> list[tuple[str, int, int]]:
        return sorted((item["user_id"], item["version"], item["as_of"]) for item in emitted)

    assert requests(lists) == requests(lists_two)


def test_one_worker_output_is_byte_identical_across_runs(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, synthetic_events: Path
) -> None:
    replay(capsys, synthetic_events, tmp_path, name="first")
    replay(capsys, synthetic_events, tmp_path, name="second")
    first = (tmp_path / "first.jsonl").read_bytes()
    assert first, "the replay emitted lists"
    assert first == (tmp_path / "second.jsonl").read_bytes()
    # A window is served when the user's next event arrives, so the file is in serving order:
    # per user, versions count up and as_of never goes back, as `evaluate --recs` reads them.
    by_user: dict[str, list[tuple[int, int]]] = {}
    for line in first.splitlines():
        emitted = orjson.loads(line)
        by_user.setdefault(emitted["user_id"], []).append((emitted["version"], emitted["as_of"]))
    for served in by_user.values():
        assert [version for version, _ in served] == list(range(1, len(served) + 1))
        assert [as_of for _, as_of in served] == sorted(as_of for _, as_of in served)


def test_emitted_lists_follow_the_published_schema(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, synthetic_events: Path
) -> None:
    _, lists, _ = replay(capsys, synthetic_events, tmp_path)
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    jsonschema.Draft202012Validator.check_schema(validator.schema)
    for emitted in lists:
        validator.validate(emitted)
    assert any(emitted["items"] for emitted in lists)
    # A list names, per item, a history item of the user, "similar", "category" or "trending".
    had: dict[str, set[str]] = {}
    for raw in jsonl.read_lines(synthetic_events):
        record = orjson.loads(raw)
        had.setdefault(record["user_id"], set()).add(record["item_id"])
    reasons = [
        (emitted["user_id"], item["because"]) for emitted in lists for item in emitted["items"]
    ]
    named = {"similar", "category", "trending"}
    assert all(because in named | had[user] for user, because in reasons)
    assert any(because in had[user] for user, because in reasons), "co-visitation explains some"
    versions: dict[str, int] = {}
    for emitted in lists:
        assert emitted["version"] > versions.get(emitted["user_id"], 0)
        versions[emitted["user_id"]] = emitted["version"]


def test_forget_user_emits_a_tombstone_and_the_user_starts_afresh(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = [
        event("u2", "a", 0),
        event("u2", "b", 1),
        event("u1", "a", 2),
        event("u1", "b", 3),
        forget("u1", 4),
        event("u1", "c", 5),
    ]
    events = write_lines(tmp_path / "events.jsonl", lines)
    # Trending items are re-sorted on every event, so they are candidates; every event gets
    # its list.
    config = "engine: {trend_refresh: 1}\nwindow: {length_s: 0}\n"
    summary, lists, letters = replay(capsys, events, tmp_path, config=config)
    assert letters == []
    assert summary["tombstones"] == 1
    assert summary["processed"] == summary["events_in"] == 6
    assert summary["users"] == 2, "u1 forgotten, then back"
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    for emitted in lists:
        validator.validate(emitted)
    mine = [emitted for emitted in lists if emitted["user_id"] == "u1"]
    assert [emitted.get("version") for emitted in mine] == [1, 2, None, 1]
    tombstone = mine[2]
    assert tombstone == {"user_id": "u1", "tombstone": True, "as_of": T0 + 4 * MINUTE}
    # Before forgetting, u1's seen items are excluded; after it, nothing of u1 is remembered.
    assert not {"a", "b"} & {entry["item_id"] for entry in mine[1]["items"]}
    assert {"a", "b"} <= {entry["item_id"] for entry in mine[3]["items"]}


def engine_lists(events: Path, config: Config) -> dict[tuple[str, int], dict[str, Any]]:
    """Every list the sequential engine hands out over ``events`` (in stream order)."""
    engine = Engine(config.engine, gate=config.gate_settings())
    lists: dict[tuple[str, int], dict[str, Any]] = {}

    def record(user_id: str) -> None:
        latest = engine.latest(user_id)
        if latest is not None:
            lists.setdefault((latest.user_id, latest.version), json.loads(latest.to_json()))

    users = set()
    for raw in jsonl.read_lines(events):
        parsed = parse_event(raw, config.known_types(), config.limits.max_message_bytes)
        assert isinstance(parsed, Event)
        engine.learn(parsed)
        record(parsed.user_id)
        users.add(parsed.user_id)
    engine.flush()
    for user_id in users:
        record(user_id)
    return lists


# With windows the end of input serves the open windows in another order than Engine.flush();
# a list served then learns nothing, so the lists are the same.
@pytest.mark.parametrize("window_s", [0, 60])
def test_dataflow_lists_equal_the_sequential_engine(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, synthetic_events: Path, window_s: int
) -> None:
    """The no-future guarantee: the keyed steps see what the sequential engine sees."""
    config_text = f"window: {{length_s: {window_s}}}\n"
    summary, lists, _ = replay(capsys, synthetic_events, tmp_path, config=config_text)
    emitted = {(item["user_id"], item["version"]): item for item in lists}
    assert len(emitted) == len(lists) == summary["lists_out"]
    config = config_from_mapping(yaml.safe_load(config_text))
    expected = engine_lists(synthetic_events, config)
    assert emitted == expected
    if window_s:
        assert len(lists) < summary["processed"], "a list per closed window, not per event"


def test_replay_reports_what_the_user_can_fix_in_one_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events = write_lines(tmp_path / "events.jsonl", [event("u1", "a", 0)])
    config = tmp_path / "config.yaml"
    config.write_text("window:\n  lenght_s: 5\n")
    capsys.readouterr()
    assert cli(["replay", str(events), "-c", str(config)]) == 2
    assert capsys.readouterr().err == (
        f'streamrec replay: {config}: unknown key "window.lenght_s" (did you mean "length_s"?)\n'
    )
    assert cli(["replay", str(tmp_path / "missing.jsonl")]) == 2
    assert "no such events file" in capsys.readouterr().err


@pytest.mark.parametrize("cluster", [["-w", "2"], ["--processes", "2"]], ids=["2w", "2p"])
def test_two_workers_or_processes_serve_the_same_requests_about_as_well_as_one(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, synthetic_events: Path, cluster: list[str]
) -> None:
    """Each worker's replica learns every event but trains its ranker on its own users only,
    so the lists differ from one worker's; the requests served and their quality do not."""
    one_summary, one, _ = replay(capsys, synthetic_events, tmp_path, name="one")
    summary, two, _ = replay(capsys, synthetic_events, tmp_path, *cluster, name="two")
    assert summary == one_summary | {
        "events_per_s": summary["events_per_s"],
        "seconds": summary["seconds"],
    }
    assert {(rec["user_id"], rec["version"]) for rec in one} == {
        (rec["user_id"], rec["version"]) for rec in two
    }
    config = Config()
    events = [
        parsed
        for raw in jsonl.read_lines(synthetic_events)
        if isinstance(parsed := parse_event(raw, config.known_types()), Event)
    ]

    def hit_rate(name: str) -> float:
        emitted = read_emitted(jsonl.read_lines(tmp_path / f"{name}.jsonl"))
        return prequential(events, [], emitted=emitted)["emitted"].hr

    single, several = hit_rate("one"), hit_rate("two")
    assert single > 0.05
    assert several > 0.8 * single, f"hr {several:.3f} with two workers, {single:.3f} with one"


def test_a_cluster_replay_stops_its_clock_when_every_flow_has_finished_not_at_exit() -> None:
    """As for one process, a cluster's seconds leave out Python's exit after the flow: each
    member says when its flow has finished, some time before its pipe closes."""

    class Member:
        """What ``_follow`` reads of a member process: its name and, once ended, exit code."""

        name, exitcode = "member", 0

        def join(self) -> None:
            pass

    receiver, sender = Pipe(duplex=False)
    closed_at: list[float] = []

    def member() -> None:
        sender.send(Tally())  # started
        sender.send(Tally(events_in=3, processed=3))
        sender.send(None)  # the flow has finished; Python's exit follows
        time.sleep(0.2)
        closed_at.append(time.perf_counter())
        sender.close()

    progress = Progress(None, quiet=True)
    thread = threading.Thread(target=member)
    thread.start()
    started, finished = _follow([Member()], [receiver], progress)  # type: ignore[list-item]
    thread.join()
    assert started <= finished < closed_at[0]
    assert progress.total.events_in == 3
