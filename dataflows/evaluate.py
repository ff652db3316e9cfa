"""``streamrec evaluate``: the prequential scores of streamrec, its ablations and the baselines.

Reads a recorded event file, replays it once through every model asked for (see
:mod:`operators.evaluation` for the protocol and the metrics) and prints a table, or with
``--json`` one JSON object::

    {"streamrec": {"hr@10": ..., "ndcg@10": ..., "mrr@10": ..., "candidate_recall": ...,
                   "coverage": ..., "targets": ..., "hr@10_cold": ..., "targets_cold": ...,
                   "hr@10_warm": ..., "targets_warm": ..., "events_per_s": ...},
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
running the engine; ``--plot`` draws every model's sliding-window hit rate over time. ``--live``
scores every model with the lists a live job run with that config holds for idle users (its
``window.close_after_idle_s``, ``window.refresh_idle_s`` and ``state.user_idle_expire_s``, see
:class:`operators.evaluation.LiveTiming`) instead of lists made when a user returns.

>>> names = [model.name for model in make_baselines()]
>>> [name for name in names if not name.startswith("covisitation_")] == [
...     name for name in BASELINE_NAMES if name != "covisitation"]
True
>>> len(names) - len(BASELINE_NAMES) + 1
24
>>> [name for name in ABLATIONS]
['fixed_blend', 'no_embeddings']
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import itertools
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import orjson

from dataflows.errors import UsageError, load_config_or_stop
from dataflows.progress import bar, track
from operators import baselines
from operators.config import Config
from operators.engine import Engine
from operators.evaluation import (
    COLD_EVENTS,
    Curve,
    EmittedFormatError,
    LiveTiming,
    OnlineRecommender,
    Report,
    prequential,
    read_emitted,
)
from operators.events import DEFAULT_MAX_BYTES, Event, Rejected, parse_event, parse_timestamp
from operators.jsonl import numbered_lines, read_lines
from operators.privacy import Pseudonymiser
from operators.warm_start import WarmStart, WarmStartError

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
    "no_embeddings": {"embeddings": False},
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
    path: Path,
    known_types: frozenset[str],
    max_bytes: int = DEFAULT_MAX_BYTES,
    users: Pseudonymiser | None = None,
) -> tuple[list[Event], int]:
    """The valid events of ``path`` and how many lines were skipped (the first one reported);
    ``known_types``, ``max_bytes`` and ``users`` validate and pseudonymise as the dataflow
    does."""
    events: list[Event] = []
    skipped = 0
    try:
        for line in numbered_lines(path):
            parsed = parse_event(line.raw, known_types, max_bytes)
            if users is not None and isinstance(parsed, Event):
                parsed = users.event(parsed)
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


def _label(section: str, name: str) -> str:
    return name if section in UNPREFIXED else f"{section}/{name}"


def _cell(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _table(sections: dict[str, dict[str, Report]], k: int) -> str:
    """One row per report, each column as wide as its widest cell, and a legend of the split.

    Every report of one pass has the same targets, so their cold/warm counts are said once.
    """
    header = ["model", f"hr@{k}", f"ndcg@{k}", f"mrr@{k}", "cand_recall"]
    header += [f"hr@{k}_cold", f"hr@{k}_warm", "coverage", "targets", "events/s"]
    rows = [header]
    for section, reports in sections.items():
        for name, report in reports.items():
            rows.append(
                [
                    _label(section, name),
                    *(_cell(value, ".4f") for value in (report.hr, report.ndcg, report.mrr)),
                    _cell(report.candidate_recall, ".4f"),
                    _cell(report.hr_cold, ".4f"),
                    _cell(report.hr_warm, ".4f"),
                    _cell(report.coverage, ".3f"),
                    _cell(report.targets, ","),
                    _cell(report.events_per_s, ",.0f"),
                ]
            )
    widths = [max(map(len, column)) for column in zip(*rows, strict=True)]
    lines = []
    for label, *figures in rows:
        cells = (cell.rjust(width + 2) for cell, width in zip(figures, widths[1:], strict=True))
        lines.append(label.ljust(widths[0]) + "".join(cells))
    first = next(iter(sections["streamrec"].values()))
    lines.append(
        f"cold: the {first.cold_targets:,} targets of users with fewer than {COLD_EVENTS} "
        f"earlier events; warm: the other {first.warm_targets:,}"
    )
    lines.append("cand_recall: targets among the model's candidates (- for a model without)")
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


#: How each section's curves are drawn: streamrec stands out, ablations are dashed.
_LINE_STYLES: dict[str, dict[str, object]] = {
    "streamrec": {"linewidth": 2.5, "zorder": 3},
    "baselines": {"linewidth": 1.5},
    "ablation": {"linewidth": 1.5, "linestyle": "--"},
    "covisitation_grid": {"linewidth": 1.0},
}


#: A curve is broken where consecutive points are further apart than this many times their
#: median spacing (a shop closed for the holidays, a pause in a stream).
_GAP_FACTOR = 5.0


def _broken_at_gaps(
    moments: list[datetime], rates: list[float]
) -> tuple[list[datetime], list[float]]:
    """The points with a NaN inserted into each long gap, which matplotlib leaves undrawn.

    >>> day = [datetime(2010, 12, d, tzinfo=UTC) for d in (1, 2, 3, 4, 20)]
    >>> _broken_at_gaps(day, [0.1, 0.2, 0.3, 0.4, 0.5])[1]
    [0.1, 0.2, 0.3, 0.4, nan, 0.5]
    """
    if len(moments) < 3:
        return moments, rates
    steps = sorted(later - earlier for earlier, later in itertools.pairwise(moments))
    limit = steps[len(steps) // 2] * _GAP_FACTOR
    xs, ys = [moments[0]], [rates[0]]
    for earlier, later, rate in zip(moments, moments[1:], rates[1:], strict=False):
        if later - earlier > limit:
            xs.append(earlier + (later - earlier) / 2)
            ys.append(float("nan"))
        xs.append(later)
        ys.append(rate)
    return xs, ys


def parse_mark(text: str) -> tuple[int, str]:
    """``--mark TIME[=LABEL]``: a moment (ISO-8601 or epoch ms) to draw on the plot.

    >>> parse_mark("1705363200000=drift"), parse_mark("2010-12-24")
    ((1705363200000, 'drift'), (1293148800000, '2010-12-24'))
    """
    moment, _, label = text.partition("=")
    try:
        ts = parse_timestamp(int(moment) if moment.isdigit() else moment)
    except ValueError as error:
        raise UsageError(f"--mark {text!r}: {error}") from None
    return ts, label or moment


def _plot(
    plt: ModuleType,
    sections: dict[str, dict[str, Report]],
    k: int,
    events: Path,
    path: Path,
    marks: list[tuple[int, str]],
    live: bool,
) -> None:
    """One line per report, labelled with its overall HR@k, legend beside the axes, best first
    within each section; a curve is broken where no target came for long (the points would
    otherwise join across the gap as if it had been measured); each of ``marks`` (a drift, a
    change to the model) is a labelled vertical line. The title names ``--live``."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.ticker import PercentFormatter

    figure, axes = plt.subplots(figsize=(11, 5), layout="constrained")
    first = last = None
    for section, reports in sections.items():
        if section == "covisitation_grid":
            continue
        for name, report in sorted(reports.items(), key=lambda named: -named[1].hr):
            moments = [datetime.fromtimestamp(ts / 1000, UTC) for ts, _ in report.curve]
            rates = [rate for _, rate in report.curve]
            if moments:
                first = moments[0] if first is None else min(first, moments[0])
                last = moments[-1] if last is None else max(last, moments[-1])
            axes.plot(
                *_broken_at_gaps(moments, rates),
                label=f"{_label(section, name)}  ({report.hr:.2%})",
                marker="." if len(report.curve) < 30 else None,
                **_LINE_STYLES[section],
            )
    for ts, label in marks:
        moment = datetime.fromtimestamp(ts / 1000, UTC)
        axes.axvline(moment, color="tab:red", linestyle="--", linewidth=1.2, zorder=4)
        axes.annotate(
            label,
            (moment, 0),
            xycoords=("data", "axes fraction"),
            xytext=(4, 6),
            textcoords="offset points",
            color="tab:red",
            fontsize=10,
            bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "edgecolor": "tab:red"},
            zorder=5,
        )
    targets = next(iter(sections["streamrec"].values())).targets
    axes.set_title(
        f"HR@{k} over event time: {events.name}, {targets:,} targets"
        f"{', lists as the live job serves them' if live else ''}\n"
        f"share of each model's last {CURVE.window:,} targets in its top {k}, one point per "
        f"{CURVE.every:,} targets",
        loc="left",
    )
    locator = AutoDateLocator()
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator, show_offset=False))
    span = "" if first is None else f", {first:%Y-%m-%d} to {last:%Y-%m-%d}"
    axes.set_xlabel(f"event time (UTC{span})")
    axes.set_ylabel(f"HR@{k}, sliding window")
    axes.yaxis.set_major_formatter(PercentFormatter(xmax=1))
    axes.set_ylim(bottom=0)
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1), title=f"model  (HR@{k})")
    axes.grid(alpha=0.3)
    try:
        figure.savefig(path, dpi=120)
    except OSError as error:
        raise UsageError(f"cannot write {path}: {error}") from None
    finally:
        plt.close(figure)


def _engines(
    config: Config, k: int, ablation: bool, live: bool, warm: WarmStart | None
) -> dict[str, Engine]:
    """The engines to run, by report section name: streamrec (unless scored from a file) and
    the ablations, each named by its config's ``model_name``. With a warm start the ablations
    also run streamrec from a cold start and the warm start frozen (no online learning)."""
    engines: dict[str, Engine] = {}
    base = dataclasses.replace(config.engine, k=k)
    gate = config.gate_settings()

    def variant(name: str, changes: dict[str, object], start: WarmStart | None) -> Engine:
        changed = dataclasses.replace(base, model_name=f"{base.model_name}_{name}", **changes)
        return Engine(changed, gate, start)

    if live:
        engines["streamrec"] = Engine(base, gate, warm)
    if ablation:
        for name, changes in ABLATIONS.items():
            engines[name] = variant(name, changes, warm)
        if warm is not None:
            engines["cold_start"] = variant("cold_start", {}, None)
            engines["frozen_pretrained"] = variant("frozen_pretrained", {}, warm)
            engines["frozen_pretrained"].freeze()
    return engines


def _warm_start(path: str | None, config: Config) -> WarmStart | None:
    if path is None:
        return None
    try:
        return WarmStart.for_config(Path(path), config.engine)
    except WarmStartError as error:
        raise UsageError(str(error)) from None


def pretrain(args: argparse.Namespace) -> int:
    """``streamrec pretrain HISTORY --out DIR``: one pass of the engine over the history (lists
    are served, as the job would, since serving trains the ranker), then its state saved."""
    config = load_config_or_stop(args.config)
    events, skipped = read_events(
        Path(args.history),
        config.known_types(),
        config.limits.max_message_bytes,
        config.pseudonymiser(),
    )
    if not events:
        raise UsageError(f"{args.history} holds no valid event")
    started = time.perf_counter()
    engine = Engine(config.engine, config.gate_settings())
    ordered = sorted(events, key=lambda event: event.ts)
    for event in track(ordered, len(ordered), quiet=args.quiet):
        engine.learn(event)
    engine.flush()
    out = Path(args.out)
    try:
        engine.save(out)
    except OSError as error:
        raise UsageError(f"cannot write the warm start to {out}: {error}") from None
    seconds = time.perf_counter() - started
    print(
        f"pretrained on {len(events):,} events ({skipped:,} invalid lines skipped) in "
        f"{seconds:.0f} s: {len(engine.replica.items):,} items, {len(engine.users):,} users "
        f"-> {out}",
        file=sys.stderr,
    )
    return 0


def _live_timing(config: Config) -> LiveTiming:
    """The live job's timers of ``config``, in event-time milliseconds."""

    def ms(seconds: float | None) -> int | None:
        return None if seconds is None else round(seconds * 1000)

    close = ms(config.window.close_after_idle_s)
    if close is None:
        raise UsageError(
            "--live scores the lists a live job serves once a user is idle, but the config's "
            "window.close_after_idle_s is null: set it (the default is 60)"
        )
    return LiveTiming(close, ms(config.window.refresh_idle_s), ms(config.state.user_idle_expire_s))


def main(args: argparse.Namespace) -> int:
    if args.k < 1:
        raise UsageError(f"--k must be at least 1, got {args.k}")
    plt = _pyplot() if args.plot else None
    marks = [parse_mark(text) for text in args.mark or ()]
    config = load_config_or_stop(args.config)
    live = _live_timing(config) if args.live else None
    emitted = None
    if args.recs is not None:
        recs = Path(args.recs)
        if not recs.exists():
            raise UsageError(f"no such file or directory: {recs}")
        emitted = read_emitted(read_lines(recs))
    events, skipped = read_events(
        Path(args.events),
        config.known_types(),
        config.limits.max_message_bytes,
        config.pseudonymiser(),
    )
    if skipped:
        print(f"evaluate: skipped {skipped:,} invalid lines", file=sys.stderr)
    if not events:
        raise UsageError(f"{args.events} holds no valid event")

    warm = _warm_start(args.warm_start, config)
    engines = _engines(config, args.k, args.ablation, emitted is None, warm)
    models: list[OnlineRecommender] = list(engines.values())
    if args.baselines:
        engine = engines.get("streamrec")
        models += make_baselines(None if engine is None else engine.candidate_items)

    started = time.perf_counter()
    try:
        with bar(len(events), quiet=args.quiet) as shown:
            reports = prequential(
                events,
                models,
                args.k,
                emitted=emitted,
                emitted_name=config.engine.model_name,
                curve=CURVE,
                progress=lambda done, _total: shown.update(done - shown.n),
                progress_every=1_000,
                known=None if warm is None else warm.seen_items(),
                live=live,
                idle_since=None if warm is None else warm.last_event_times(),
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
        sections["ablation"] = {
            name: reports[engine.name] for name, engine in engines.items() if name != "streamrec"
        }

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
        _plot(plt, sections, args.k, Path(args.events), Path(args.plot), marks, args.live)
    return 0
