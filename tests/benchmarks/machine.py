"""What the machine gives a second process: the same CPU-bound Python work in one process and in
two at once (prints figures).

python tests/benchmarks/machine.py [--rounds 5] [--steps 10000000]

Work that shares nothing gets twice one process's throughput from two processes only when each
has a core of its own for the whole run. On a shared virtual machine it gets less, and how much
less drifts from minute to minute (on this 2-core machine: 1.37 to 2.65 times over one day's
rounds). ``streamrec bench`` runs this beside each round of its replays, so the replay's
2-process ratio can be read against what the machine gave a job with nothing to share.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier

import numpy as np

#: About a second and a half of work in one process here.
STEPS = 10_000_000


def work(steps: int) -> float:
    """Dictionary, float and small numpy work, the kinds the job's Python does; returns a total
    so that none of it can be skipped."""
    table: dict[int, float] = {}
    vector = np.ones(32)
    for step in range(steps):
        key = step * 7919 % 4096
        table[key] = table.get(key, 0.0) + 0.5
        if step % 256 == 0:
            vector = np.tanh(vector * 1.0001)
    return sum(table.values()) + float(vector.sum())


def _member(start: Barrier, report: Connection, steps: int) -> None:
    work(1_000)  # imports and first-call costs before the clock starts
    start.wait()
    began = time.perf_counter()
    work(steps)
    report.send(time.perf_counter() - began)
    report.close()


def steps_per_s(processes: int, steps: int = STEPS) -> float:
    """Steps per second of ``processes`` processes that each do ``steps`` from one moment on:
    all steps over the slowest one's time."""
    spawn = multiprocessing.get_context("spawn")
    start = spawn.Barrier(processes)
    pipes = [spawn.Pipe(duplex=False) for _ in range(processes)]
    members = [
        spawn.Process(target=_member, args=(start, sender, steps), daemon=True)
        for _receiver, sender in pipes
    ]
    for member in members:
        member.start()
    try:
        seconds = [receiver.recv() for receiver, _sender in pipes]
    finally:
        for member in members:
            member.join(timeout=10)
            if member.is_alive():
                member.kill()
    return processes * steps / max(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=STEPS)
    args = parser.parse_args()
    if args.rounds < 1 or args.steps < 1:
        parser.error("--rounds and --steps must be positive")
    ratios = []
    for number in range(1, args.rounds + 1):
        one, two = steps_per_s(1, args.steps), steps_per_s(2, args.steps)
        ratios.append(two / one)
        print(
            f"round {number}: 1 process {one:,.0f} steps/s, 2 at once {two:,.0f}: x{two / one:.2f}"
        )
    print(f"2 processes / 1: median x{statistics.median(ratios):.2f} of {args.rounds} rounds")


if __name__ == "__main__":
    main()
