"""Where one process of the job spends its time, by category (pyinstrument, sampling).

Each sample's time goes to the innermost Python frame; time in Bytewax's Rust core shows up as
the own time of ``run_main`` (the Python frame that entered it), and C extensions (orjson,
librdkafka, pickle) as the own time of the Python function that called them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

from bytewax.testing import run_main
from pyinstrument import Profiler
from pyinstrument.frame import Frame

from dataflows.recommend import build_flow
from operators.config import Config

#: Category of a frame, by needles in its file path and function (first match wins).
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("Kafka", ("confluent_kafka", "/connectors/kafka/")),
    ("River", ("/river/",)),
    ("ranking", ("ranking.py", "candidates.py", "features.py", "/numpy/")),
    ("state", ("user_state.py", "item_state.py", "trend.py", "windows.py", "steps.py")),
    ("parsing", ("intake.py", "events.py", "jsonl.py", "gzip.py")),
    ("exchange/serialisation", ("messages.py", "pickle", "copyreg", "orjson")),
    ("Bytewax", ("/bytewax/", "run_main", "recommend.py", "connectors.py")),
]
OTHER = "other (builtins, dataclasses, gc)"


def category(where: str) -> str:
    for name, needles in CATEGORIES:
        if any(needle in where for needle in needles):
            return name
    return OTHER


def _is_python(frame: Frame) -> bool:
    return not frame.is_synthetic and bool(frame.file_path) and frame.file_path != "<built-in>"


def own_times(root: Frame) -> Iterator[tuple[str, float]]:
    """(category, time not spent in children) of every frame under ``root``; a built-in or
    pyinstrument's ``[self]`` frame counts for its nearest Python caller."""
    stack = [(root, f"{root.file_path}:{root.function}")]
    while stack:
        frame, caller = stack.pop()
        where = f"{frame.file_path}:{frame.function}" if _is_python(frame) else caller
        yield category(where), frame.time - sum(child.time for child in frame.children)
        stack.extend((child, where) for child in frame.children)


def profile_job(config: Config) -> tuple[dict[str, float], float]:
    """Run the job for ``config`` to the end of its input under the profiler, as one worker
    with the live job's epoch length; seconds per category and the wall time."""
    flow = build_flow(config)
    epoch = timedelta(seconds=config.recovery.snapshot_interval_s)
    profiler = Profiler(interval=0.001)
    started = time.perf_counter()
    profiler.start()
    try:
        run_main(flow, epoch_interval=epoch)
    finally:
        session = profiler.stop()
    wall = time.perf_counter() - started
    spent: dict[str, float] = {}
    root = session.root_frame()
    if root is not None:
        for name, own in own_times(root):
            spent[name] = spent.get(name, 0.0) + own
    return spent, wall
