"""Throughput over a recorded file: the passthrough ceiling, the sequential engine and replay.

The passthrough flow is built here from the job's own source, parser and sink, so its events/s
is what Bytewax moves through parse, key, a trivial stateful step and serialise on this
machine. The engine and the replay run through the ``streamrec`` command line, each in its own
process, as a user would run them.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import bytewax.operators as op
import orjson
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from dataflows.connectors import JsonLinesSink, JsonLinesSource
from operators import jsonl
from operators.config import Config
from operators.intake import Admitted, DeadLetter, admit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kafka_job import ENTRY_POINT, ROOT, hit_rate

#: One epoch for the whole run, as a one-worker replay has.
_ONE_EPOCH = timedelta(days=365)


class CommandError(Exception):
    """A ``streamrec`` command the bench ran failed; the message holds its stderr."""


@dataclass(frozen=True)
class ReplayFigures:
    events_per_s: float
    lists_per_s: float
    hr_at_10: float


def head(source: Path, limit: int | None, target: Path) -> int:
    """Copy the first ``limit`` events of ``source`` (all without a limit) into ``target``."""
    with jsonl.open_bytes(source) as lines, target.open("wb") as out:
        count = 0
        for line in islice(lines, limit):
            out.write(line if line.endswith(b"\n") else line + b"\n")
            count += 1
    return count


def _count_event(count: int | None, admitted: Admitted) -> tuple[int, tuple[Admitted, int]]:
    seen = (count or 0) + 1
    return seen, (admitted, seen)


def _line(counted: tuple[Admitted, int]) -> bytes:
    admitted, seen = counted
    event = admitted.event
    return orjson.dumps({"user_id": event.user_id, "as_of": event.ts, "version": seen})


def _is_admitted(message: Admitted | DeadLetter) -> bool:
    return isinstance(message, Admitted)


def passthrough_flow(events: Path, out: Path, config: Config) -> Dataflow:
    """Parse, key by user, count per user, serialise and write: the job without a recommender."""
    flow = Dataflow("passthrough")
    raw = op.input("input", flow, JsonLinesSource(events))
    parse = partial(
        admit, known_types=config.known_types(), max_bytes=config.limits.max_message_bytes
    )
    admitted = op.filter("valid", op.map("admit", raw, parse), _is_admitted)
    keyed = op.key_on("by_user", admitted, lambda message: message.event.user_id)
    lines = op.map_value("serialise", op.stateful_map("count", keyed, _count_event), _line)
    op.output("output", lines, JsonLinesSink(out))
    return flow


def passthrough_eps(events: Path, count: int, out: Path, config: Config) -> float:
    flow = passthrough_flow(events, out, config)
    started = time.perf_counter()
    run_main(flow, epoch_interval=_ONE_EPOCH)
    return count / (time.perf_counter() - started)


def streamrec(*argv: str, timeout_s: float = 3600.0) -> dict[str, Any]:
    """Run ``streamrec ARGV --json`` in a new process; its JSON output."""
    (document,) = streamrec_at_once([argv], timeout_s)
    return document


def streamrec_at_once(commands: list[Sequence[str]], timeout_s: float = 3600.0) -> list[Any]:
    """Run each ``streamrec ARGV --json`` of ``commands`` in a process of its own, all at once;
    their JSON outputs, in order."""
    with ExitStack() as stack:
        running = []
        for argv in commands:
            stdout, stderr = (stack.enter_context(tempfile.TemporaryFile()) for _ in range(2))
            command = [sys.executable, "-c", ENTRY_POINT, *argv, "--json"]
            process = subprocess.Popen(command, cwd=ROOT, stdout=stdout, stderr=stderr)
            stack.callback(process.kill)
            running.append((argv, process, stdout, stderr))
        deadline = time.monotonic() + timeout_s
        documents = []
        for argv, process, stdout, stderr in running:
            shown = " ".join(argv)
            try:
                returncode = process.wait(max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                raise CommandError(f"streamrec {shown} ran over {timeout_s:.0f} s") from None
            if returncode != 0:
                stderr.seek(0)
                lines = stderr.read().decode(errors="replace").strip().splitlines()[-5:]
                raise CommandError(
                    f"streamrec {shown} exited with {returncode}: {' | '.join(lines)}"
                )
            stdout.seek(0)
            documents.append(orjson.loads(stdout.read()))
        return documents


def evaluate_eps(events: Path) -> tuple[float, float]:
    """Events/s and HR@10 of the sequential engine (no baselines)."""
    scores = streamrec("evaluate", str(events))["streamrec"]
    return float(scores["events_per_s"]), float(scores["hr@10"])


def replay(events: Path, out: Path, processes: int) -> ReplayFigures:
    """Replay ``events`` to ``out`` with ``processes`` local processes, then score the lists."""
    summary = streamrec("replay", str(events), "--out", str(out), "--processes", str(processes))
    lists_per_s = summary["lists_out"] / max(summary["seconds"], 1e-9)
    return ReplayFigures(float(summary["events_per_s"]), lists_per_s, hit_rate(events, out))


def replays_at_once(events: Path, scratch: Path, copies: int) -> float:
    """Events/s of ``copies`` independent 1-process replays of ``events`` run at once: all their
    events over the slowest one's time. Nothing is shared between them, so this is what the
    machine gives this very job from more processes at that moment (on a shared virtual machine,
    less than ``copies`` times one, and how much less drifts from minute to minute)."""
    summaries = streamrec_at_once(
        [
            ("replay", str(events), "--out", str(scratch / f"copy-{copy}.jsonl"))
            for copy in range(copies)
        ]
    )
    slowest = max(summary["seconds"] for summary in summaries)
    return sum(summary["events_in"] for summary in summaries) / max(slowest, 1e-9)
