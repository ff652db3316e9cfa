"""Online quality: the lists a replica served, scored against what their users did next, and
the quality records of the dataflow."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest
import yaml

from dataflows.cli import main as cli
from dataflows.evaluate import read_events
from dataflows.replay import BUNDLED_EVENTS
from operators.config import Config
from operators.engine import Engine
from operators.engine_config import EngineConfig
from operators.evaluation import prequential
from operators.item_model import Observation
from operators.messages import ForgetUser, Label, Serve, Train
from operators.quality import OnlineQuality
from operators.replica import ModelReplica

TEA = ("tea", 0, 1.0)
SCHEMA = Path(__file__).resolve().parents[1] / "deploy" / "schema" / "quality.schema.json"


def test_the_window_keeps_only_the_latest_targets() -> None:
    quality = OnlineQuality(window=2)
    quality.score(1)
    quality.score(None)
    assert (quality.hit_rate, quality.ndcg) == (0.5, 0.5)
    quality.score(None)
    quality.score(3)
    assert quality.hit_rate == 0.5
    assert quality.ndcg == pytest.approx(0.5 / math.log2(4))
    assert quality.targets == 4 and quality.window_targets == 2


def test_coverage_forgets_the_lists_that_left_the_window() -> None:
    quality = OnlineQuality(window=2)
    for items in (["a", "b"], ["b", "c"], ["c", "d"]):
        quality.served(items)
    assert quality.coverage(catalog=8) == 3 / 8, "a left with the first list"


def replica_with_links() -> ModelReplica:
    """Three items linked to tea, so a tea buyer is offered them."""
    replica = ModelReplica(EngineConfig(dimensions=4, k=2, trend_top=0, similar=0))
    replica.on_message(Observation("tea", 0, 1.0, True, ()))
    for ts, item in enumerate(("jam", "cup", "pot"), start=1):
        replica.on_message(Observation(item, ts, 1.0, True, (TEA,)))
    return replica


def serve(replica: ModelReplica, user: str) -> list[str]:
    listed = replica.on_message(Serve(user, (TEA,), ("tea",), 1, 10))
    assert listed is not None and not isinstance(listed, tuple)
    return [item for item, _, _ in listed.items]


def test_a_target_is_a_hit_at_its_rank_in_the_list_served_before_it() -> None:
    replica = replica_with_links()
    first, second = serve(replica, "ann")
    replica.on_message(Train("ann", (TEA,), ("tea",), second))
    replica.on_message(Label("ann", "spoon"))  # not in the list (not even in the model)
    assert replica.quality.targets == 2
    assert replica.quality.hit_rate == 0.5
    assert replica.quality.ndcg == pytest.approx(0.5 / math.log2(3))
    assert first != second


def test_users_without_a_served_list_score_nothing() -> None:
    replica = replica_with_links()
    replica.on_message(Train("bob", (TEA,), ("tea",), "jam"))  # never served here
    serve(replica, "cat")
    replica.on_message(ForgetUser("cat", 11))
    replica.on_message(Train("cat", (), (), "jam"))  # forgotten: the list went with the user
    assert replica.quality.targets == 0


def test_the_online_hit_rate_tracks_the_offline_score_of_returning_users() -> None:
    config = Config()
    events, _ = read_events(BUNDLED_EVENTS, config.known_types())
    engine = Engine(config.engine, config.gate_settings())
    engine.replica.quality = OnlineQuality(window=len(events))
    report = prequential(events, [engine], k=10)["streamrec"]
    online = engine.replica.quality
    # Only returning users hold a served list: the online figure sits near the warm HR@10 and
    # well above the overall one, whose first baskets always miss.
    assert 0.5 * report.hr_warm < online.hit_rate < 2 * report.hr_warm
    assert online.hit_rate > 2 * report.hr
    assert report.targets > online.targets > 0.2 * report.targets


def test_replay_writes_a_quality_record_every_n_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = tmp_path / "quality.jsonl"
    config = tmp_path / "config.yaml"
    quality = {
        "every_events": 10_000,
        "window_targets": 500,
        "output": {"file": {"path": str(records)}},
    }
    config.write_text(yaml.safe_dump({"quality": quality}))
    assert cli(["replay", str(BUNDLED_EVENTS), "-c", str(config), "--json"]) == 0
    events = json.loads(capsys.readouterr().out)["events_in"]
    lines = [json.loads(line) for line in records.read_text().splitlines()]
    validator = jsonschema.Draft202012Validator(json.loads(SCHEMA.read_text()))
    for line in lines:
        validator.validate(line)
    assert [line["events"] for line in lines] == list(range(10_000, events + 1, 10_000))
    last = lines[-1]
    assert last["replica"] and last["model"] == "streamrec"
    assert last["window_targets"] == 500
    assert 0 < last["hit_rate"] < 0.5 and 0 < last["ndcg"] < last["hit_rate"]
    assert 0 < last["coverage"] < 1 and last["items"] > 1000
    assert set(last["ranker_weights"]) >= {"similarity", "trend_rank"}
    assert [line["as_of"] for line in lines] == sorted(line["as_of"] for line in lines)
