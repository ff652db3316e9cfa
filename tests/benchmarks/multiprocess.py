"""Throughput and HR@10 of the replay as one process and as a local multi-process cluster.

Runs ``streamrec replay --processes P -w W`` over an event file once per setup (processes x
worker threads), then scores each setup's emitted lists with ``streamrec evaluate --recs``::

    .venv/bin/streamrec import online-retail online_retail.csv.gz /tmp/retail.jsonl.gz
    .venv/bin/python tests/benchmarks/multiprocess.py /tmp/retail.jsonl.gz --setups 1x1 2x1 1x2

Events/s is over the wall clock of the whole run, start-up included; CPU is the user+system
time of all processes. Prints one line per setup and the HR@10 of each against the first.
"""

from __future__ import annotations

import argparse
import gzip
import resource
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka_job import ENTRY_POINT, ROOT, hit_rate


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _setup(text: str) -> tuple[int, int]:
    processes, _, workers = text.partition("x")
    return int(processes), int(workers)


def _events(source: Path, limit: int | None, scratch: Path) -> tuple[Path, int]:
    """The first ``limit`` events of ``source`` as a plain file, and their count."""
    opener = gzip.open if source.suffix == ".gz" else open
    target = scratch / "events.jsonl"
    count = 0
    with opener(source, "rb") as lines, target.open("wb") as out:
        for line in islice(lines, limit):
            out.write(line)
            count += 1
    return target, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path, help="JSON Lines events (.gz too)")
    parser.add_argument("--limit", type=int, help="only the first N events")
    parser.add_argument("--setups", nargs="+", default=["1x1", "2x1"], help="PROCESSESxWORKERS")
    parser.add_argument("--timeout-s", type=float, default=7200.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="streamrec-multiprocess-") as name:
        scratch = Path(name)
        events, count = _events(args.events, args.limit, scratch)
        print(f"{count:,} events from {args.events}", flush=True)
        results = []
        for text in args.setups:
            processes, workers = _setup(text)
            directory = scratch / text
            directory.mkdir()
            recs = directory / "recs.jsonl"
            cpu_before = _children_cpu_s()
            started = time.perf_counter()
            replay = ["replay", str(events), "--out", str(recs), "--json"]
            setup = ["--processes", str(processes), "-w", str(workers)]
            subprocess.run(
                [sys.executable, "-c", ENTRY_POINT, *replay, *setup],
                cwd=ROOT,
                check=True,
                timeout=args.timeout_s,
                stdout=subprocess.DEVNULL,
            )
            seconds = time.perf_counter() - started
            cpu = _children_cpu_s() - cpu_before
            lists = sum(1 for _ in recs.open("rb"))
            hr = hit_rate(events, recs)
            results.append(hr)
            print(
                f"{processes} process(es) x {workers} worker(s): {seconds:7.1f} s wall, "
                f"{count / seconds:8,.0f} events/s, {cpu:7.1f} s CPU, {lists:,} lists, "
                f"HR@10 {hr:.4f} ({(hr / results[0] - 1) * 100 if results[0] else 0:+.1f}% "
                f"vs {args.setups[0]})",
                flush=True,
            )


if __name__ == "__main__":
    main()
