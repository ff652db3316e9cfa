"""A model that learns beats one that does not, on small streams built to show it: the River
ranker against the fixed prior, rating semantics, and a warm start against a cold one."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from dataflows import cli
from operators import jsonl, synthetic
from operators.engine import Engine
from operators.engine_config import EngineConfig
from operators.evaluation import prequential
from operators.events import Event

T0 = 1_700_000_000_000
MINUTE = 60_000


def hit_rate(config: EngineConfig, stream: list[Event]) -> float:
    report = prequential(stream, [Engine(config)], k=config.k)[config.model_name]
    assert report.targets > 100
    return report.hr


def popularity_stream(seed: int, events: int = 4_000) -> list[Event]:
    """Next items drawn by popularity, whatever the user had before: co-visitation is noise
    here and popularity is what predicts the next item."""
    rng = random.Random(seed)
    items = [f"i{n}" for n in range(150)]
    weights = [1.0 / (rank + 1) ** 0.8 for rank in range(len(items))]
    return [
        Event(f"u{rng.randrange(300)}", rng.choices(items, weights)[0], T0 + n * MINUTE, "view")
        for n in range(events)
    ]


@pytest.mark.parametrize("seed", [0, 1])
def test_the_river_ranker_beats_the_fixed_prior_when_popularity_predicts(seed: int) -> None:
    # The first item alone, so that the blend is what decides the hit.
    stream = popularity_stream(seed)
    learned = hit_rate(EngineConfig(dimensions=8, k=1), stream)
    fixed = hit_rate(EngineConfig(dimensions=8, k=1, ranker="fixed"), stream)
    assert learned > fixed * 1.05, f"river {learned:.3f} vs fixed {fixed:.3f}"


def link(engine: Engine, source: str, target: str) -> float:
    items = engine.replica.items
    return items.links_of(items.rows[source]).get(items.rows[target], 0.0)


def rated(ratings: list[tuple[str, float]]) -> Engine:
    engine = Engine(EngineConfig(dimensions=4))
    for n, (item, value) in enumerate(ratings):
        engine.learn(Event("u", item, T0 + n * MINUTE, "rating", value=value))
    return engine


def test_a_rating_below_the_users_mean_links_weaker_than_one_above() -> None:
    high = rated([("a", 4.0), ("b", 4.0), ("c", 5.0)])
    low = rated([("a", 4.0), ("b", 4.0), ("c", 2.0)])
    assert link(low, "b", "c") < link(high, "b", "c")
    # The same three stars: praise from a harsh rater, a complaint from a generous one.
    harsh = rated([("a", 1.0), ("b", 2.0), ("c", 3.0), ("d", 3.0)])
    generous = rated([("a", 5.0), ("b", 4.0), ("c", 3.0), ("d", 3.0)])
    assert link(harsh, "c", "d") > link(generous, "c", "d")


@pytest.fixture(scope="module")
def halves(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A synthetic stream cut at two thirds: the even users' events before the cut (the
    history to pretrain on) and the odd users' after it (users the warm start never saw).

    Returning users are left out of the second part on purpose: the evaluator only knows the
    second part, so it would count items a user had before the cut as targets, which the warm
    start rightly excludes as seen.
    """
    directory = tmp_path_factory.mktemp("warm")
    whole = directory / "events.jsonl"
    # No drift: what the history teaches still holds after the cut.
    config = synthetic.GeneratorConfig(
        users=150, items=120, events=6_000, seed=3, categories=6, drift_share=0.0
    )
    synthetic.write_stream(config, whole)
    lines = list(jsonl.read_lines(whole))
    cut = len(lines) * 2 // 3

    def of_users(part: list[bytes], parity: int) -> list[bytes]:
        return [line for line in part if int(orjson.loads(line)["user_id"][1:]) % 2 == parity]

    first, second = directory / "history.jsonl", directory / "later.jsonl"
    jsonl.write_jsonl(first, of_users(lines[:cut], 0))
    jsonl.write_jsonl(second, of_users(lines[cut:], 1))
    return first, second


def test_pretraining_on_a_history_beats_a_cold_start_later(
    halves: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = halves
    warm = tmp_path / "warm"
    assert cli.main(["pretrain", str(first), "--out", str(warm)]) == 0
    capsys.readouterr()
    argv = ["evaluate", str(second), "--json", "--ablation", "--warm-start", str(warm)]
    assert cli.main(argv) == 0
    document = orjson.loads(capsys.readouterr().out)
    warm_hr = document["streamrec"]["hr@10"]
    cold_hr = document["ablation"]["cold_start"]["hr@10"]
    assert warm_hr > cold_hr * 1.1, f"warm {warm_hr:.3f} vs cold {cold_hr:.3f}"
    # Online learning on top of the warm start helps too.
    assert warm_hr >= document["ablation"]["frozen_pretrained"]["hr@10"]
