"""``streamrec replay``: run the dataflow over a recorded event file, as fast as it goes.

It is the same dataflow as the live job (:func:`dataflows.recommend.build_flow`), with the input,
output and dead letter replaced by files and the processing-time timers off, so the result
depends on the events alone: with one worker the output file is the same byte for byte on every
run. Without an events file it replays the bundled recorded stream. The counts come from the
dataflow itself; ``events_in == processed + dead_lettered`` is checked before it exits.

    streamrec replay                                   # the bundled sample, summary only
    streamrec replay events.jsonl.gz --out recs.jsonl --dead-letter dead.jsonl -w 2 --json
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import TextIO

import orjson
from bytewax.testing import cluster_main, run_main

from dataflows.cli import UsageError
from dataflows.recommend import build_flow
from operators.config import Config, ConfigError, FileEndpoint, load_config
from operators.tally import Tally

#: The recorded stream replayed when no events file is given.
BUNDLED_EVENTS = Path(__file__).resolve().parent / "data" / "online_retail_sample.jsonl.gz"

# One worker: one epoch for the whole replay. No recovery is kept, and epoch boundaries fall at
# wall-clock moments, so more of them could only make the batching vary between runs.
_ONE_EPOCH = timedelta(days=365)
# Several workers: Bytewax's keyed steps take epochs in order but the open epoch's messages in
# whatever order they reach each worker, so a step could apply a later event's update before
# answering an earlier request. An epoch per small input batch keeps that window to a few events.
_EVERY_BATCH = timedelta(0)
_MULTI_WORKER_BATCH = 5


class Progress:
    """Shows the running counts on stderr and keeps the last total."""

    def __init__(self, stream: TextIO, interval_s: float) -> None:
        self.total = Tally()
        self._stream = stream
        self._interval_s = interval_s
        self._started = time.perf_counter()
        self._shown = self._started
        self._live = stream.isatty()

    def __call__(self, total: Tally) -> None:
        self.total = total
        now = time.perf_counter()
        if now - self._shown < self._interval_s:
            return
        self._shown = now
        rate = total.events_in / max(now - self._started, 1e-9)
        line = (
            f"{total.events_in:,} events in, {total.processed:,} processed, "
            f"{total.dead_lettered:,} dead-lettered, {total.lists_out:,} lists ({rate:,.0f}/s)"
        )
        self._stream.write(f"\r{line}" if self._live else f"{line}\n")
        self._stream.flush()

    def finish(self) -> None:
        if self._live:
            self._stream.write("\n")


def summary(total: Tally, seconds: float) -> dict[str, float | int]:
    """The figures ``--json`` prints."""
    return {
        "events_in": total.events_in,
        "processed": total.processed,
        "dead_lettered": total.dead_lettered,
        "late": total.late,
        "lists_out": total.lists_out,
        "tombstones": total.tombstones,
        "events_per_s": round(total.events_in / max(seconds, 1e-9), 1),
        "seconds": round(seconds, 3),
    }


def main(args: argparse.Namespace) -> int:
    events = Path(args.events) if args.events else BUNDLED_EVENTS
    if not events.exists():
        hint = "" if args.events else " (the bundled sample is missing: reinstall streamrec)"
        raise UsageError(f"no such events file or directory: {events}{hint}")
    if args.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {args.workers}")
    try:
        config = load_config(args.config)
    except ConfigError as error:
        raise UsageError(str(error)) from None
    with tempfile.TemporaryDirectory(prefix="streamrec-replay-") as scratch:
        out = Path(args.out) if args.out else None
        if out is None and args.evaluate:
            out = Path(scratch) / "recommendations.jsonl"
        dead_letter = Path(args.dead_letter) if args.dead_letter else None
        total, seconds = _replay(config.for_replay(events, out, dead_letter), args.workers)
        figures = summary(total, seconds)
        if args.json:
            print(orjson.dumps(figures).decode())
        else:
            print(
                f"replayed {events}: {total.events_in:,} events in, {total.processed:,} processed "
                f"({total.late:,} late), {total.dead_lettered:,} dead-lettered, "
                f"{total.lists_out:,} lists out, {total.tombstones:,} users forgotten, "
                f"{figures['events_per_s']:,.0f} events/s ({seconds:.1f} s)"
            )
        if not total.balanced:
            print(
                f"streamrec replay: accounting does not add up: {total.pending} events unaccounted",
                file=sys.stderr,
            )
            return 1
        if args.evaluate:
            return _evaluate(events, out, args)
    return 0


def _replay(config: Config, workers: int) -> tuple[Tally, float]:
    """Run the dataflow to the end of the input; returns its final counts and the wall time."""
    for endpoint in (config.output, config.dead_letter):
        # The sinks open their file only when the first record comes: start from an empty one so
        # that no record of an earlier run remains.
        if isinstance(endpoint, FileEndpoint):
            Path(endpoint.path).parent.mkdir(parents=True, exist_ok=True)
            Path(endpoint.path).write_bytes(b"")
    if workers > 1 and isinstance(config.input, FileEndpoint):
        config = dataclasses.replace(
            config, input=dataclasses.replace(config.input, batch_size=_MULTI_WORKER_BATCH)
        )
    progress = Progress(sys.stderr, interval_s=0.5 if sys.stderr.isatty() else 30.0)
    flow = build_flow(config, report=progress)
    # A replay allocates millions of short-lived objects and few cycles: with the default
    # thresholds the cyclic garbage collector took about a third of the run.
    thresholds = gc.get_threshold()
    gc.set_threshold(200_000, 20, 100)
    started = time.perf_counter()
    try:
        if workers == 1:
            run_main(flow, epoch_interval=_ONE_EPOCH)
        else:
            cluster_main(flow, [], 0, epoch_interval=_EVERY_BATCH, worker_count_per_proc=workers)
    finally:
        gc.set_threshold(*thresholds)
    seconds = time.perf_counter() - started
    progress.finish()
    return progress.total, seconds


def _evaluate(events: Path, recs: Path | None, args: argparse.Namespace) -> int:
    from dataflows import evaluate
    from dataflows.cli import build_parser

    argv = ["evaluate", str(events), "--recs", str(recs)]
    if args.config:
        argv += ["-c", args.config]
    if args.json:
        argv.append("--json")
    return evaluate.main(build_parser().parse_args(argv))
