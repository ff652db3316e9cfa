"""Replay speed of the dataflow (one process) and where its time goes (prints figures).

python tests/benchmarks/replay_speed.py EVENTS.jsonl.gz [-w N] [--limit N] [--profile]

Without EVENTS it imports ../shared/datasets/online-retail first. ``--profile`` runs one worker
under cProfile and splits the time by component: the runtime (Bytewax's Rust core, run_main),
the wiring in ``dataflows/``, parsing, the gate, and each engine step.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import tempfile
from collections import defaultdict
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dataflows import replay  # noqa: E402
from operators import importers, jsonl  # noqa: E402
from operators.config import load_config  # noqa: E402

RETAIL = ROOT.parent / "shared" / "datasets" / "online-retail" / "online_retail.csv.gz"

#: Component of a profiled function, by the file it is defined in (first match wins).
COMPONENTS = [
    (
        "rank step (ranking, candidates, features, River)",
        ("ranking.py", "candidates.py", "features.py", "/river/", "numpy"),
    ),
    ("item step (item_state)", ("item_state.py",)),
    ("user step (user_state)", ("user_state.py",)),
    ("trend step (trend)", ("trend.py",)),
    ("gate (windows)", ("windows.py",)),
    (
        "parse (events, intake, jsonl, gzip)",
        ("events.py", "intake.py", "jsonl.py", "gzip.py", "orjson"),
    ),
    ("wiring (dataflows/)", ("/dataflows/",)),
    ("bytewax python shims", ("/bytewax/",)),
    ("bytewax runtime (Rust, incl. exchange)", ("run_main", "cluster_main")),
]


def component(filename: str, name: str) -> str:
    where = f"{filename}:{name}"
    for label, needles in COMPONENTS:
        if any(needle in where for needle in needles):
            return label
    return "other (builtins, dataclasses, gc)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", nargs="?")
    parser.add_argument("-w", "--workers", type=int, default=1)
    parser.add_argument("--limit", type=int, help="replay only the first N events")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        events = Path(args.events) if args.events else Path(folder) / "retail.jsonl.gz"
        if not args.events:
            importers.import_dataset("online-retail", RETAIL, events)
        if args.limit:
            head = Path(folder) / "head.jsonl"
            with jsonl.open_bytes(events) as stream:
                head.write_bytes(b"".join(islice(stream, args.limit)))
            events = head
        config = load_config(None).for_replay(events, Path(folder) / "recs.jsonl", None)
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        total, seconds = replay._replay(config, args.workers)
        if profiler is not None:
            profiler.disable()
    print(f"events: {total.events_in:,}  lists: {total.lists_out:,}  workers: {args.workers}")
    print(f"wall: {seconds:.1f} s  events/s: {total.events_in / seconds:,.0f}")
    if profiler is not None:
        shares: dict[str, float] = defaultdict(float)
        stats = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
        for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.items():
            shares[component(filename, name)] += tottime
        profiled = sum(shares.values())
        print(f"profiled {profiled:.1f} s (cProfile overhead included):")
        for label, spent in sorted(shares.items(), key=lambda item: -item[1]):
            print(f"  {spent / profiled:6.1%}  {spent:7.1f} s  {label}")


if __name__ == "__main__":
    main()
