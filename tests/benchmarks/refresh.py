"""Cost of one refresh of the trending items and the similar pool (prints figures).

python tests/benchmarks/refresh.py EVENTS [--learn 400000 --measure 50000]

Learns the first ``--learn`` events of a JSON Lines file into one item model (popularity only:
no previous items), then times ``ItemModel.trending()`` every ``trend_refresh`` events of the
next ``--measure``, each after a flush so that the learning it would apply is not counted.
"""

from __future__ import annotations

import argparse
import sys
import time
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from operators import jsonl
from operators.engine_config import EngineConfig
from operators.events import Rejected, parse_event
from operators.item_model import ItemModel, Observation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path)
    parser.add_argument("--learn", type=int, default=400_000)
    parser.add_argument("--measure", type=int, default=50_000)
    args = parser.parse_args()
    if not args.events.exists():
        parser.error(f"no such file or directory: {args.events}")
    config = EngineConfig()
    model = ItemModel(config)
    lines = islice(jsonl.read_lines(args.events), args.learn + args.measure)
    spent, refreshes = 0.0, 0
    for number, raw in enumerate(lines):
        event = parse_event(raw)
        if isinstance(event, Rejected):
            continue
        model.observe(Observation(event.item_id, event.ts, 1.0, True, ()))
        if number >= args.learn and model.observed % config.trend_refresh == 0:
            model.flush()
            started = time.perf_counter()
            model.trending()
            spent += time.perf_counter() - started
            refreshes += 1
    if not refreshes:
        sys.exit(f"refresh.py: {args.events} has too few events for --learn {args.learn}")
    print(
        f"{len(model.rows):,} live items, {refreshes:,} refreshes: "
        f"{spent / refreshes * 1e6:.0f} us each"
    )


if __name__ == "__main__":
    main()
