"""``streamrec evaluate``: the prequential scores of streamrec, its ablations and the baselines.

Reads a recorded event file, replays it once through every model asked for (see
:mod:`operators.evaluation` for the protocol and the metrics) and prints a table, or with
``--json`` one JSON object::

    {"streamrec": {"hr@10": ..., "ndcg@10": ..., "mrr@10": ..., "coverage": ...,
                   "targets": ..., "events_per_s": ...},
     "baselines": {"popularity": {...}, "decayed_popularity": {...},
                   "window_popularity": {...}, "covisitation": {..., "variant": ...},
                   "bpr": {...}, "isgd": {...}, "river_biasedmf": {...}},
     "covisitation_grid": {"covisitation_w10_raw": {...}, ...},
     "ablation": {...}}

``covisitation`` is the variant of a small fixed grid (the same for every stream, see
:func:`operators.baselines.covisitation_grid`) with the best HR@k in this run, named by
``variant``; its ``events_per_s`` is the cost of the whole grid. ``covisitation_grid`` lists
every variant (the first of each history length pays for the counting they share).

The engine runs with the config's ``engine`` section and gate (``-c``), its lists made ``--k``
long. ``--recs`` scores lists the dataflow emitted (``streamrec replay --out``) instead of
running the engine; ``--plot`` draws every model's sliding-window hit rate over time.

>>> names = [model.name for model in make_baselines()]
>>> [name for name in names if not name.startswith("covisitation_")] == [
...     name for name in BASELINE_NAMES if name != "covisitation"]
True
>>> len(names) - len(BASELINE_NAMES) + 1
12
>>> [name for name in ABLATIONS]
['fixed_blend']
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import orjson

from dataflows.cli import UsageError
from operators import baselines
from operators.config import Config, ConfigError, load_config
from operators.engine import Engine
from operators.evaluation import (
    Curve,
    EmittedFormatError,
    OnlineRecommender,
    Report,
    prequential,
    read_emitted,
)
from operators.events import DEFAULT_MAX_BYTES, Event, Rejected, parse_event
from operators.jsonl import numbered_lines, read_lines

#: Candidates the River baseline ranks per list.
RIVER_CANDIDATES = 100
#: The shared README's decayed popularity half-life.
HALF_LIFE_EVENTS = 5_000
#: The grid variant whose lists River ranks when the engine does not run (the class defaults).
RIVER_CANDIDATES_FROM = baselines.Covisitation().name

#: The plotted curve: hit rate of the last 5,000 targets, one point per 1,000 targets.
CURVE = Curve(window=5_000, every=1_000)

BASELINE_NAMES = (
    "popularity",
    "decayed_popularity",
    "window_popularity",
    "covisitation",
    "bpr",
    "isgd",
    "river_biasedmf",
)

#: Table sections whose rows are their model names alone (grid variants say what they are).
UNPREFIXED = ("streamrec", "covisitation_grid")

#: streamrec without one of its parts, as changes to its engine config.
ABLATIONS: dict[str, dict[str, object]] = {
    "fixed_blend": {"ranker": "fixed"},
}


def make_baselines(candidates: Callable[[str], list[str]] | None = None) -> list[OnlineRecommender]:
    """The baselines, with every co-visitation variant in place of ``covisitation``. River
    ranks ``candidates(user)``: streamrec's own candidates when the engine runs in the same
    pass, else the top 100 of co-visitation with its default parameters."""
    grid = baselines.covisitation_grid()
    if candidates is None:
        (default,) = [variant for variant in grid if variant.name == RIVER_CANDIDATES_FROM]
        candidates = functools.partial(default.recommend, k=RIVER_CANDIDATES)
    return [
        baselines.Popularity(),
        baselines.Popularity(half_life_events=HALF_LIFE_EVENTS),
        baselines.WindowPopularity(),
        *grid,
        baselines.BPR(),
        baselines.ISGD(),
        baselines.RiverBiasedMF(candidates),
    ]


def best_covisitation(grid: list[Report]) -> tuple[str, Report]:
    """The name of the grid variant with the best hit rate (the first on a tie) and its report
    as ``covisitation``, timed as the whole grid."""
    best = max(grid, key=lambda report: report.hr)
    seconds = sum(report.seconds or 0.0 for report in grid)
    return best.name, dataclasses.replace(best, name="covisitation", seconds=seconds)


def read_events(
    path: Path, known_types: frozenset[str], max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[Event], int]:
    """The valid events of ``path`` and how many lines were skipped (the first one reported);
    ``known_types`` and ``max_bytes`` validate as the dataflow does."""
    events: list[Event] = []
    skipped = 0
    try:
        for line in numbered_lines(path):
            parsed = parse_event(line.raw, known_types, max_bytes)
            if isinstance(parsed, Rejected):
                if not skipped:
                    print(
                        f"evaluate: skipping invalid lines, first {line.path}:{line.number}: "
                        f"{parsed.reason}",
                        file=sys.stderr,
                    )
                skipped += 1
            else:
                events.append(parsed)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None
    except OSError as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    return events, skipped


def _config(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as error:
        raise UsageError(str(error)) from None


def _progress(started: float) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        elapsed = time.perf_counter() - started
        print(f"evaluate: {done:,}/{total:,} events, {elapsed:.0f} s", file=sys.stderr)

    return report


def _table(sections: dict[str, dict[str, Report]], k: int) -> str:
    header = f"{'model':<40}{'hr@' + str(k):>9}{'ndcg@' + str(k):>9}{'mrr@' + str(k):>9}"
    header += f"{'coverage':>10}{'targets':>10}{'events/s':>11}"
    lines = [header]
    for section, reports in sections.items():
        for name, report in reports.items():
            label = name if section in UNPREFIXED else f"{section}/{name}"
            speed = "-" if report.events_per_s is None else f"{report.events_per_s:,.0f}"
            lines.append(
                f"{label:<40}{report.hr:>9.4f}{report.ndcg:>9.4f}{report.mrr:>9.4f}"
                f"{report.coverage:>10.3f}{report.targets:>10,}{speed:>11}"
            )
    return "\n".join(lines)


def _pyplot() -> ModuleType:
    """matplotlib's pyplot on a file-only backend, or a readable error if it is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(
            "--plot needs matplotlib: pip install 'streamrec[plot]' (or leave out --plot)"
        ) from None
    return plt


def _plot(plt: ModuleType, sections: dict[str, dict[str, Report]], k: int, path: Path) -> None:
    figure, axes = plt.subplots(figsize=(10, 5))
    for section, reports in sections.items():
        for name, report in reports.items():
            if report.curve and section != "covisitation_grid":
                moments = [datetime.fromtimestamp(ts / 1000, UTC) for ts, _ in report.curve]
                axes.plot(moments, [rate for _, rate in report.curve], label=name)
    axes.set_xlabel("event time (UTC)")
    axes.set_ylabel(f"HR@{k} over the last {CURVE.window:,} targets")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.autofmt_xdate()
    figure.tight_layout()
    try:
        figure.savefig(path, dpi=120)
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error}") from None
    finally:
        plt.close(figure)


def _engines(config: Config, k: int, ablation: bool, live: bool) -> dict[str, Engine]:
    """The engines to run, by report section name: streamrec (unless scored from a file) and
    the ablations, each named by its config's ``model_name``."""
    engines: dict[str, Engine] = {}
    base = dataclasses.replace(config.engine, k=k)
    gate = config.gate_settings()
    if live:
        engines["streamrec"] = Engine(base, gate)
    if ablation:
        for variant, changes in ABLATIONS.items():
            variant_config = dataclasses.replace(
                base, model_name=f"{base.model_name}_{variant}", **changes
            )
            engines[variant] = Engine(variant_config, gate)
    return engines


def main(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise UsageError(f"--k must be at least 1, got {args.k}")
    plt = _pyplot() if args.plot else None
    config = _config(args.config)
    emitted = None
    if args.recs is not None:
        recs = Path(args.recs)
        if not recs.exists():
            raise UsageError(f"no such file or directory: {recs}")
        emitted = read_emitted(read_lines(recs))
    events, skipped = read_events(
        Path(args.events), config.known_types(), config.limits.max_message_bytes
    )
    if skipped:
        print(f"evaluate: skipped {skipped:,} invalid lines", file=sys.stderr)
    if not events:
        raise UsageError(f"{args.events} holds no valid event")

    engines = _engines(config, args.k, args.ablation, live=emitted is None)
    models: list[OnlineRecommender] = list(engines.values())
    if args.baselines:
        engine = engines.get("streamrec")
        models += make_baselines(None if engine is None else engine.candidate_items)

    started = time.perf_counter()
    try:
        reports = prequential(
            events,
            models,
            args.k,
            emitted=emitted,
            emitted_name=config.engine.model_name,
            curve=CURVE,
            progress=_progress(started),
        )
    except EmittedFormatError as error:
        raise UsageError(f"{args.recs}: {error}") from None
    print(f"evaluate: done in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    streamrec = reports[config.engine.model_name]
    sections: dict[str, dict[str, Report]] = {"streamrec": {"streamrec": streamrec}}
    variant = None
    if args.baselines:
        grid = [report for name, report in reports.items() if name.startswith("covisitation_")]
        variant, best = best_covisitation(grid)
        sections["baselines"] = {
            name: best if name == "covisitation" else reports[name] for name in BASELINE_NAMES
        }
        sections["covisitation_grid"] = {report.name: report for report in grid}
    if args.ablation:
        sections["ablation"] = {variant: reports[engines[variant].name] for variant in ABLATIONS}

    if args.json:
        document: dict[str, object] = {"streamrec": streamrec.metrics()}
        for section in ("baselines", "covisitation_grid", "ablation"):
            if section in sections:
                document[section] = {
                    name: report.metrics() for name, report in sections[section].items()
                }
        if variant is not None:
            document["baselines"]["covisitation"]["variant"] = variant  # type: ignore[index]
        sys.stdout.write(orjson.dumps(document).decode() + "\n")
    else:
        print(_table(sections, args.k))
        if variant is not None:
            print(f"baselines/covisitation is the best of its grid: {variant}")
    if plt is not None:
        _plot(plt, sections, args.k, Path(args.plot))
    return 0
