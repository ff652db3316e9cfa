"""Ranker variants replayed on the lists the engine served (prints figures, asserts nothing).

The ranker orders candidates but never changes them, nor the item model, so one pass of the
engine over a stream records everything a ranker sees: each served list's candidates and
features, each target the ranker learns from, and each basket the evaluation scores. Replaying
that record with another ranker gives the HR@10 the engine would have had with it, in seconds
instead of a whole evaluation. The variants:

- ``learned``: the default ranker (reproduces ``streamrec evaluate``'s HR@10 exactly);
- ``fixed``: the fixed prior;
- ``adjust_xN``: the learned ranker whose learning rate is multiplied by N while the hit rate of
  the last 500 targets is under 85 % of its best so far (a drift detector driving the learning).

For each it prints HR@10 and, with ``--drift-at``, how many targets after that moment the hit
rate of the last 1,000 targets needs to get back to 90 % of the 3,000 targets before it::

    .venv/bin/python tests/benchmarks/ranker_replay.py drift.jsonl --drift-at 1705363200000
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections import deque
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np
from river import optim

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dataflows.evaluate import read_events
from operators import evaluation
from operators.config import load_config
from operators.engine import Engine
from operators.engine_config import EngineConfig
from operators.messages import Serve
from operators.ranking import Ranker
from operators.replica import ModelReplica

#: ("serve", user, rows, features) | ("learn", user, row) | ("ask", user) | ("targets", rows, ts)
Record = tuple


class RecordingReplica(ModelReplica):
    """A replica that writes down what its ranker saw."""

    log: list[Record]

    def serve(self, message: Serve):  # type: ignore[no-untyped-def]
        recommendation, candidates = super().serve(message)
        kept = self.open[message.user_id]
        self.log.append(("serve", message.user_id, kept.rows, kept.features))
        return recommendation, candidates

    def keep(self, user_id, rows, features, top=None) -> None:  # type: ignore[no-untyped-def]
        super().keep(user_id, rows, features, top)
        if top is None:
            self.log.append(("keep", user_id, rows.astype(np.int32), features.astype(np.float16)))

    def _learn(self, user_id: str, item_id: str) -> None:
        row = self.items.rows.get(item_id)
        self.log.append(("learn", user_id, -1 if row is None else row))
        super()._learn(user_id, item_id)


class _Asking:
    """The engine as the evaluator sees it, noting which user's list is asked for."""

    def __init__(self, engine: Engine, log: list[Record]) -> None:
        self.engine, self.log, self.name = engine, log, engine.name

    def learn(self, event) -> None:  # type: ignore[no-untyped-def]
        self.engine.learn(event)

    def catch_up(self, user_id: str, ts: int) -> None:
        self.engine.catch_up(user_id, ts)

    def recommend(self, user_id: str, k: int) -> list[str]:
        self.log.append(("ask", user_id))
        return self.engine.recommend(user_id, k)


def record(path: Path) -> list[Record]:
    """One evaluation of the default engine over ``path``, written down."""
    config = load_config(None)
    events, _ = read_events(path, config.known_types(), config.limits.max_message_bytes, None)
    log: list[Record] = []
    RecordingReplica.log = log
    engine = Engine(config.engine, config.gate_settings())
    engine.replica = RecordingReplica(config.engine)
    rows = engine.replica.items.rows
    score = evaluation._Scorer.score

    def scoring(self, ts: int, targets: Sequence[str], *rest: object) -> None:  # type: ignore[no-untyped-def]
        log.append(("targets", [rows.get(target, -1) for target in targets], ts))
        score(self, ts, targets, *rest)  # type: ignore[arg-type]

    evaluation._Scorer.score = scoring  # type: ignore[method-assign]
    try:
        evaluation.prequential(events, [_Asking(engine, log)], config.engine.k)
    finally:
        evaluation._Scorer.score = score  # type: ignore[method-assign]
    return log


def replay(
    log: list[Record], ranker: Ranker, on_target: Callable[[bool], None], k: int
) -> list[tuple[int, bool]]:
    """Each scored target's (ts, hit) with ``ranker`` ordering the recorded lists."""
    kept: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    served: dict[str, Collection[int]] = {}
    asked: Collection[int] | None = None
    outcomes: list[tuple[int, bool]] = []
    for entry in log:
        kind = entry[0]
        if kind == "serve":
            _, user, rows, features = entry
            scores = ranker.scores(features.astype(np.float64))
            count = min(k, len(scores))
            top = np.argpartition(-scores, count - 1)[:count] if count < len(scores) else ...
            served[user] = set(rows[top].tolist())
            kept[user] = rows, features
        elif kind == "keep":
            kept[entry[1]] = entry[2], entry[3]
        elif kind == "learn":
            _, user, row = entry
            training = kept.get(user)
            if training is None or row < 0 or len(training[0]) < 2:
                continue
            rows, features = training
            column = int(np.searchsorted(rows, row))
            if column < len(rows) and rows[column] == row:
                ranker.learn(features.astype(np.float64), column)
        elif kind == "ask":
            asked = served.get(entry[1], ())
        else:
            for target in entry[1]:
                hit = asked is not None and target in asked
                outcomes.append((entry[2], hit))
                on_target(hit)
            asked = None
    return outcomes


def adjusting(ranker: Ranker, boost: float, window: int = 500, drop: float = 0.85):
    """A callback that multiplies the ranker's learning rate by ``boost`` while the hit rate of
    the last ``window`` targets is under ``drop`` times its best so far."""
    recent: deque[bool] = deque(maxlen=window)
    base = ranker.optimizer.learning_rate if ranker.optimizer else 0.0
    best = 0.0

    def on_target(hit: bool) -> None:
        nonlocal best
        recent.append(hit)
        if len(recent) == window and ranker.optimizer is not None:
            rate = sum(recent) / window
            best = max(best, rate)
            ranker.optimizer.lr = optim.schedulers.Constant(
                base * (boost if rate < drop * best else 1.0)
            )

    return on_target


def recovery(outcomes: list[tuple[int, bool]], drift_at: int) -> int | None:
    """Targets after ``drift_at`` until the last 1,000 hit 90 % as often as the 3,000 before."""
    hits = np.array([hit for _, hit in outcomes], float)
    start = next(index for index, (ts, _) in enumerate(outcomes) if ts >= drift_at)
    before = hits[max(start - 3_000, 0) : start].mean()
    rolling = np.convolve(hits[start:], np.ones(1_000) / 1_000, mode="valid")
    back = np.flatnonzero(rolling >= 0.9 * before)
    return int(back[0]) + 1_000 if len(back) else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("--drift-at", type=int, help="epoch ms of the drift (streamrec generate)")
    args = parser.parse_args()
    log = record(args.events)
    config = load_config(None).engine
    variants: dict[str, tuple[EngineConfig, float]] = {
        "learned": (config, 1.0),
        "fixed": (dataclasses.replace(config, ranker="fixed"), 1.0),
        "adjust_x3": (config, 3.0),
        "adjust_x10": (config, 10.0),
    }
    print("| ranker | HR@10 | targets to recover |\n| --- | --- | --- |")
    for name, (variant, boost) in variants.items():
        ranker = Ranker(variant)
        outcomes = replay(log, ranker, adjusting(ranker, boost), config.k)
        hr = sum(hit for _, hit in outcomes) / max(len(outcomes), 1)
        back = recovery(outcomes, args.drift_at) if args.drift_at else None
        print(f"| {name} | {hr:.4f} | {'-' if back is None else f'{back:,}'} |")


if __name__ == "__main__":
    main()
