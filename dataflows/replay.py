"""``streamrec replay``: run the dataflow over a recorded event file, as fast as it goes.

It is the same dataflow as the live job (:func:`dataflows.recommend.build_flow`), with the input,
output and dead letter replaced by files and the processing-time timers off, so the result
depends on the events alone: with one worker the output file is the same byte for byte on every
run. Without an events file it replays the bundled recorded stream. The counts come from the
dataflow itself; ``events_in == processed + dead_lettered`` is checked before it exits.

    streamrec replay                                   # the bundled sample, summary only
    streamrec replay events.jsonl.gz --out recs.jsonl --dead-letter dead.jsonl -w 2 --json
    streamrec replay events.jsonl.gz --processes 2     # a local cluster of two processes

``--processes N`` runs the flow as a Bytewax cluster of ``N`` local processes that this one
starts and watches, as ``python -m bytewax.run -i I -a ...`` would, with the live job's epoch
length (so does ``-w`` above 1, in one process). If any process fails, the others are stopped
and replay exits with an error naming it and its exit code. ``--warm-start DIR`` starts from a
pretrained state (``streamrec pretrain``).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import multiprocessing.connection
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import cast

import orjson
from bytewax.testing import cluster_main, run_main

from dataflows.errors import UsageError, load_config_or_stop
from dataflows.idle_poller import idle_once_workers_run
from dataflows.progress import bar
from dataflows.recommend import COLLECTOR_THRESHOLDS, build_flow
from operators.config import Config, FileEndpoint
from operators.jsonl import read_lines
from operators.tally import Tally
from operators.warm_start import WarmStart, WarmStartError

#: The recorded stream replayed when no events file is given.
BUNDLED_EVENTS = Path(__file__).resolve().parent / "data" / "online_retail_sample.jsonl.gz"

# One worker: one epoch for the whole replay. No recovery is kept, and epoch boundaries fall at
# wall-clock moments, so more of them could only make the batching vary between runs. Several
# workers use the live job's epoch (``recovery.snapshot_interval_s``), as a deployment would.
_ONE_EPOCH = timedelta(days=365)


class Progress:
    """Shows the running counts on a progress bar (stderr, only on a terminal) and keeps the last
    total; ``expected`` events make the ETA."""

    def __init__(self, expected: int | None, quiet: bool) -> None:
        self.total = Tally()
        self._bar = bar(expected, quiet=quiet)

    def __call__(self, total: Tally) -> None:
        self.total = total
        self._bar.update(total.events_in - self._bar.n)
        self._bar.set_postfix_str(
            f"{total.dead_lettered:,} dead-lettered, {total.lists_out:,} lists", refresh=False
        )

    def finish(self) -> None:
        self._bar.close()


def _count_lines(events: Path, quiet: bool) -> int | None:
    """The input's line count for the ETA, when a bar is shown (reading it costs a pass)."""
    if quiet or not sys.stderr.isatty():
        return None
    return sum(1 for _ in read_lines(events))


def summary(total: Tally, seconds: float) -> dict[str, object]:
    """The figures ``--json`` prints."""
    return {
        "events_in": total.events_in,
        "processed": total.processed,
        "dead_lettered": total.dead_lettered,
        "dead_letters_by_reason": total.dead_by_kind(),
        "late": total.late,
        "lists_out": total.lists_out,
        "tombstones": total.tombstones,
        "users": total.users,
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
    if args.processes < 1:
        raise UsageError(f"--processes must be at least 1, got {args.processes}")
    config = load_config_or_stop(args.config)
    with tempfile.TemporaryDirectory(prefix="streamrec-replay-") as scratch:
        out = Path(args.out) if args.out else None
        if out is None and args.evaluate:
            out = Path(scratch) / "recommendations.jsonl"
        dead_letter = Path(args.dead_letter) if args.dead_letter else None
        warm = Path(args.warm_start) if args.warm_start else None
        if warm is not None:
            try:
                WarmStart.for_config(warm, config.engine)
            except WarmStartError as error:
                raise UsageError(str(error)) from None
        progress = Progress(_count_lines(events, args.quiet), args.quiet)
        total, seconds = _replay(
            config.for_replay(events, out, dead_letter),
            args.workers,
            args.processes,
            warm,
            progress,
        )
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


def _replay(
    config: Config,
    workers: int,
    processes: int = 1,
    warm: Path | None = None,
    progress: Progress | None = None,
) -> tuple[Tally, float]:
    """Run the dataflow to the end of the input; returns its final counts and the wall time,
    which leaves out starting Python and importing streamrec and, after the flow, Python's
    exit (in this process, these come before and after; a cluster's processes start the clock
    when every one has imported streamrec and stop it when every one has finished its flow)."""
    for endpoint in (config.output, config.dead_letter):
        # The sinks open their file only when the first record comes: start from an empty one so
        # that no record of an earlier run remains.
        if isinstance(endpoint, FileEndpoint):
            Path(endpoint.path).parent.mkdir(parents=True, exist_ok=True)
            Path(endpoint.path).write_bytes(b"")
    progress = progress or Progress(None, quiet=True)
    if processes == 1 and workers == 1:
        started = time.perf_counter()
        _run_process(config, workers, None, 0, progress, warm)
        finished = time.perf_counter()
    else:
        started, finished = _run_cluster(config, workers, processes, progress, warm)
    progress.finish()
    return progress.total, finished - started


def _run_process(
    config: Config,
    workers: int,
    addresses: list[str] | None,
    process_id: int,
    report: Callable[[Tally], None],
    warm: Path | None,
) -> None:
    """Run this process's share of the flow (all of it without ``addresses``)."""
    processes = len(addresses) if addresses else 1
    warm_start = None if warm is None else WarmStart.read(warm)
    flow = build_flow(config, report=report, workers=workers * processes, warm=warm_start)
    thresholds = gc.get_threshold()
    gc.set_threshold(*COLLECTOR_THRESHOLDS)
    try:
        if addresses is None and workers == 1:
            run_main(flow, epoch_interval=_ONE_EPOCH)
        else:
            cluster_main(
                flow,
                addresses or [],
                process_id,
                epoch_interval=timedelta(seconds=config.recovery.snapshot_interval_s),
                worker_count_per_proc=workers,
            )
    finally:
        gc.set_threshold(*thresholds)


def _run_cluster(
    config: Config, workers: int, processes: int, progress: Progress, warm: Path | None
) -> tuple[float, float]:
    """Run the flow in ``processes`` processes of ``workers`` workers, all started here: this
    process only watches them, so each one's Bytewax poller can be made idle
    (:mod:`dataflows.idle_poller`). Returns the ``perf_counter`` moments at which every process
    had started (imported streamrec) and had finished its flow.

    Each process sends through a pipe that it has started, then every running total of the
    counts it sees (they are summed in one partition, which Bytewax may place in any process),
    then that its flow has finished (its exit, 0.15 to 0.2 s more, is not the flow's time).
    A process that fails is an error: the others are stopped and the exit codes reported.
    """
    addresses = [f"127.0.0.1:{port}" for port in free_ports(processes)] if processes > 1 else None
    spawn = multiprocessing.get_context("spawn")
    pipes = [spawn.Pipe(duplex=False) for _ in range(processes)]
    children = [
        spawn.Process(
            target=_cluster_member,
            args=(config, workers, addresses, process_id, sender, warm),
            name=f"streamrec-replay-{process_id}",
        )
        for process_id, (_, sender) in enumerate(pipes)
    ]
    receivers = [receiver for receiver, _ in pipes]
    try:
        # Process 0 first: the others connect to it, and one that found it not listening yet
        # would retry only a second later. They take longer to start than it takes to listen.
        for number, (child, (_, sender)) in enumerate(zip(children, pipes, strict=True)):
            child.start()
            sender.close()  # the child has its copy: a child that ends reads as EOF
            if number == 0:
                _follow(children[:1], receivers[:1], progress, until_started=True)
        return _follow(children, receivers, progress, started=receivers[:1])
    finally:
        _stop(children)


def _follow(
    children: list[BaseProcess],
    receivers: list[Connection],
    progress: Progress,
    started: list[Connection] | None = None,
    until_started: bool = False,
) -> tuple[float, float]:
    """Hand the children's totals to ``progress`` until every child has ended (or, with
    ``until_started``, has said it started); the moments at which the last one had started and
    had finished its flow. ``started``: the receivers of children known to have started."""
    waiting = dict(zip(receivers, children, strict=True))
    unstarted = set(receivers) - set(started or [])
    moment = finished = time.perf_counter()
    while waiting and (unstarted or not until_started):
        for receiver in cast(list[Connection], multiprocessing.connection.wait(list(waiting))):
            try:
                total = cast(Tally | None, receiver.recv())
            except EOFError:
                child = waiting.pop(receiver)
                child.join()
                if child.exitcode != 0:
                    raise UsageError(
                        f"cluster process {child.name} failed (exit code {child.exitcode}); "
                        "the others were stopped"
                    ) from None
                continue
            if total is None:
                finished = time.perf_counter()
            elif receiver in unstarted:
                unstarted.discard(receiver)
                moment = time.perf_counter()
            elif total.events_in:
                progress(total)
    return moment, finished


def _stop(children: list[BaseProcess]) -> None:
    for child in children:
        if child.is_alive():
            child.terminate()
            child.join(timeout=5)
            if child.is_alive():
                child.kill()


def _cluster_member(
    config: Config,
    workers: int,
    addresses: list[str] | None,
    process_id: int,
    sender: Connection,
    warm: Path | None,
) -> None:
    # Ctrl-C reaches the whole process group: the parent alone answers it, by stopping us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sender.send(Tally())  # started: the clock starts when every process has
    with idle_once_workers_run(workers):
        _run_process(config, workers, addresses, process_id, sender.send, warm)
    sender.send(None)  # finished: the clock stops when every process has


def free_ports(count: int) -> list[int]:
    """``count`` distinct local TCP ports nothing listens on right now."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _evaluate(events: Path, recs: Path | None, args: argparse.Namespace) -> int:
    from dataflows import evaluate
    from dataflows.cli import build_parser

    argv = ["evaluate", str(events), "--recs", str(recs)]
    if args.config:
        argv += ["-c", args.config]
    if args.json:
        argv.append("--json")
    if args.quiet:
        argv.append("--quiet")
    return evaluate.main(build_parser().parse_args(argv))
