"""What online learning buys after a concept drift (prints figures).

Generates a synthetic stream whose users partly change taste at a known moment, then runs in
one prequential pass: streamrec learning all along, a copy of streamrec whose learning is frozen
at the drift point, and the baselines. From each sliding-window HR@10 curve it reports the
pre-drift level (mean over the curve points in the last fifth of the stream before the drift)
and the time after the drift until the curve is back at 90 % of that level::

    .venv/bin/python tests/benchmarks/drift_recovery.py --events 2000000 --users 100000

The issue's scale is 2,000,000 events; smaller ``--events`` give a quicker, noisier answer.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dataflows.evaluate import make_baselines
from operators import synthetic
from operators.config import load_config
from operators.engine import Engine
from operators.evaluation import Curve, Report, prequential
from operators.events import Event, event_from_record

RECOVERED = 0.9


class FrozenAt:
    """An engine that stops learning from the first event at or after ``ts``."""

    def __init__(self, engine: Engine, ts: int, name: str) -> None:
        self.engine = engine
        self.ts = ts
        self.name = name

    def learn(self, event: Event) -> None:
        if self.engine.learning and event.ts >= self.ts:
            self.engine.freeze()
        self.engine.learn(event)

    def catch_up(self, user_id: str, ts: int) -> None:
        self.engine.catch_up(user_id, ts)

    def recommend(self, user_id: str, k: int) -> list[str]:
        return self.engine.recommend(user_id, k)


def recovery_ms(report: Report, drift_ts: int, start_ts: int) -> tuple[float, float | None]:
    """(pre-drift level, ms after the drift until the curve is back at 90 % of it, or None)."""
    before = [hr for ts, hr in report.curve if start_ts <= ts < drift_ts]
    level = sum(before) / len(before) if before else 0.0
    # The curve only reflects the drift once its window is past the drift point: look for the
    # first dip below the target, then for the return above it.
    dipped = False
    for ts, hr in report.curve:
        if ts < drift_ts:
            continue
        if hr < RECOVERED * level:
            dipped = True
        elif dipped:
            return level, float(ts - drift_ts)
    return level, (0.0 if not dipped else None)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=300_000)
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--items", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--drift-at", type=float, default=0.5)
    parser.add_argument("--drift-share", type=float, default=0.5)
    args = parser.parse_args()

    config = synthetic.GeneratorConfig(**vars(args))  # the options are named as its fields
    events = [event_from_record(orjson.loads(line)) for line in synthetic.iter_lines(config)]
    drift_ts = synthetic.drift_timestamp(config)
    start_ts = drift_ts - round(0.2 * (drift_ts - events[0].ts))

    defaults = load_config(None)
    live = Engine(defaults.engine, defaults.gate_settings())
    frozen = FrozenAt(
        Engine(defaults.engine, defaults.gate_settings()), drift_ts, "streamrec_frozen_at_drift"
    )
    curve = Curve(window=max(1_000, args.events // 100), every=max(200, args.events // 500))
    started = time.perf_counter()
    reports = prequential(
        events, [live, frozen, *make_baselines(live.candidate_items)], 10, curve=curve
    )
    print(
        f"{len(events):,} events, drift at {drift_ts} ({args.drift_share:.0%} of users), "
        f"{time.perf_counter() - started:.0f} s"
    )
    print(f"{'model':<28} {'HR@10':>7} {'pre-drift':>9} {'recovery':>12}")
    recoveries: dict[str, float | None] = {}
    for name, report in reports.items():
        level, recovery = recovery_ms(report, drift_ts, start_ts)
        recoveries[name] = recovery
        shown = "never" if recovery is None else f"{recovery / 3_600_000:.1f} h"
        print(f"{name:<28} {report.hr:7.4f} {level:9.4f} {shown:>12}")
    mine, theirs = recoveries[live.name], recoveries[frozen.name]
    if mine is not None and theirs is not None and mine > 0:
        print(f"recovery speed-up over the frozen copy: {theirs / mine:.1f}x")
    elif mine is not None and theirs is None:
        print("the frozen copy never recovered; streamrec did")


if __name__ == "__main__":
    main()
