"""The bench's smallest pieces on a tiny input: every figure is there and positive.

No timing is asserted: the figures and their targets live in the bench's output.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent / "benchmarks"))

import report
import speed
import suite
from memory import users_growth
from profiling import CATEGORIES, OTHER, category, profile_job

from operators.config import load_config


def test_the_file_parts_and_the_memory_figures_are_positive(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    assert speed.head(suite.BUNDLED, 300, events) == 300
    results = suite.Results()
    suite.file_parts(results, events, tmp_path, rounds=2)
    runs = results.figures["replay_eps_2proc_runs"]
    assert len(runs) == 2 and results.figures["replay_eps_2proc"] == max(runs)
    copies = results.figures["replay_eps_2copies_runs"]
    assert len(copies) == 2 and min(copies) > 0
    hits = results.figures["replay_hr10_2proc_runs"]
    assert results.figures["replay_hr10_2proc"] == statistics.median(hits)
    # Enough users that their share of the RSS stands out of the allocator's granularity.
    scale = suite.Scale(
        events=300,
        list_per_event_backlog=100,
        latency_s=1,
        idle_s=1,
        idle_rate=1,
        memory_users=20_000,
        memory_items=1_000,
        memory_served=100,
        idle_in_process_s=2,
        rounds=1,
    )
    suite.memory_part(results, scale)
    results.profile = {"state": 2.0, "ranking": 1.0}
    document = report.json_object(results)
    assert document["failures"] == {}
    assert document["profile_seconds"] == results.profile, "--json carries the profile too"
    expected = [key for key in report.REQUIRED if not key.startswith(("kafka", "lat", "snap"))]
    for key in expected:
        assert document[key] > 0, key
    assert "(no figure)" not in report.table(results).split("Kafka")[0]


def test_the_profile_sorts_the_replay_time_into_categories(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    speed.head(suite.BUNDLED, 2_000, events)
    spent, wall = profile_job(load_config(None).for_replay(events, None, None))
    assert wall > 0 and sum(spent.values()) > 0
    assert set(spent) <= {name for name, _needles in CATEGORIES} | {OTHER}
    # Parsing a line takes about a microsecond: a short replay may give it no sample at all.
    assert {"state", "ranking"} <= set(spent)


def test_each_part_of_the_job_falls_in_its_profile_category() -> None:
    where = {
        "/app/operators/events.py:parse_event": "parsing",
        "/app/operators/user_state.py:on_event": "state",
        "/app/operators/candidates.py:gather": "ranking",
        "/venv/confluent_kafka/cimpl.py:poll": "Kafka",
        "/venv/bytewax/run.py:cli_main": "Bytewax",
        "<built-in>:len": OTHER,
    }
    assert {place: category(place) for place in where} == where


def test_the_memory_stream_has_the_users_and_items_it_says() -> None:
    figures = users_growth(users=50, items=20, served=10, seed=0)
    assert figures["users"] == 50 and 0 < figures["items"] <= 20 and figures["events"] == 150
    assert figures["served_users"] == figures["kept_lists"] == 10 and figures["kept_lists_bytes"]


def test_a_ratio_over_rounds_is_the_median_of_each_rounds_ratio() -> None:
    figures = {
        "replay_eps_1proc": 30.0,
        "replay_eps_1proc_runs": [30.0, 20.0, 25.0],
        "evaluate_eps": 40.0,
        "evaluate_eps_runs": [40.0, 20.0, 50.0],
    }
    ratio = report._ratio("replay_eps_1proc", "evaluate_eps")
    assert ratio(figures) == 0.75, "the rounds' ratios are 0.75, 1.0 and 0.5"
    figures["evaluate_eps_runs"] = [60.0]  # a round failed: the best figures' ratio
    figures["evaluate_eps"] = 60.0
    assert ratio(figures) == 0.5
    assert ratio({"replay_eps_1proc": 3.0, "evaluate_eps": 4.0}) == 0.75


def test_commands_run_at_once_report_each_output_and_a_failure_with_its_reason(
    tmp_path: Path,
) -> None:
    events = tmp_path / "events.jsonl"
    speed.head(suite.BUNDLED, 200, events)
    replay = ("replay", str(events), "--out")
    first, second = speed.streamrec_at_once(
        [(*replay, str(tmp_path / "a.jsonl")), (*replay, str(tmp_path / "b.jsonl"))]
    )
    assert first["events_in"] == second["events_in"] == 200
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(speed.CommandError, match=r"no such events file.*missing\.jsonl"):
        speed.streamrec_at_once([(*replay, str(tmp_path / "c.jsonl")), ("replay", str(missing))])
