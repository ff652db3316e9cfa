"""Speed and peak memory of the synthetic generator at benchmark scale (prints figures).

python tests/benchmarks/generator_speed.py [--users 1000000 --items 100000 --events 2000000]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from operators import jsonl, synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gzip", action="store_true", help="write .jsonl.gz instead of .jsonl")
    args = parser.parse_args()
    config = synthetic.GeneratorConfig(
        users=args.users, items=args.items, events=args.events, seed=args.seed
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("stream.jsonl.gz" if args.gzip else "stream.jsonl")
        started = time.perf_counter()
        stream = synthetic.generate(config)
        generated = time.perf_counter()
        written = jsonl.write_jsonl(path, synthetic.lines(stream))
        finished = time.perf_counter()
        size = path.stat().st_size
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    total = finished - started
    print(f"{written:,} events, {args.users:,} users, {args.items:,} items -> {path.name}")
    print(f"generate {generated - started:.2f} s, serialise+write {finished - generated:.2f} s")
    print(f"total {total:.2f} s = {written / total:,.0f} events/s; {size / 1e6:,.0f} MB written")
    print(f"peak RSS {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
