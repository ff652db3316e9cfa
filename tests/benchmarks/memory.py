"""RSS growth of one process learning a synthetic stream through the sequential Engine.

Prints one JSON object: the growth in bytes, and the distinct users and items of the stream::

    .venv/bin/python tests/benchmarks/memory.py --users 1000000 --items 100000

The events are built before the first reading and kept until the second, so only the engine's
state is measured.
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from operators.config import load_config
from operators.engine import Engine
from operators.events import Event

PAGE = resource.getpagesize()
T0 = 1_704_067_200_000
#: (ms after the user's first event, type) of each of a user's three events.
VISITS = ((0, "view"), (1_000, "view"), (120_000, "purchase"))


def rss_bytes() -> int:
    gc.collect()
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


def stream(users: int, items: int, seed: int) -> list[Event]:
    """Every user views two random items a second apart and buys a third two minutes later:
    the purchase closes the first window, so each user also holds one served list."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, items, size=(users, 3))
    starts = T0 + np.arange(users, dtype=np.int64) * 50
    events = [
        Event(f"u{user}", f"i{picks[user, visit]}", int(starts[user]) + offset, kind)
        for user in range(users)
        for visit, (offset, kind) in enumerate(VISITS)
    ]
    events.sort(key=lambda event: event.ts)
    return events


def learn(users: int, items: int, seed: int) -> dict[str, float]:
    events = stream(users, items, seed)
    defaults = load_config(None)
    before = rss_bytes()
    engine = Engine(defaults.engine, defaults.gate_settings())
    started = time.perf_counter()
    for event in events:
        engine.learn(event)
    seconds = time.perf_counter() - started
    return {
        "rss_growth_bytes": rss_bytes() - before,
        "users": users,
        "items": len({event.item_id for event in events}),
        "events": len(events),
        "events_per_s": len(events) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--items", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(orjson.dumps(learn(args.users, args.items, args.seed)).decode())


if __name__ == "__main__":
    main()
