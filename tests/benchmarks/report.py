"""The bench's readable table (figures, ratios, issue 10's targets) and its plot."""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from suite import Results

#: The keys ``--json`` always has (null when their part failed).
REQUIRED = (
    "passthrough_eps",
    "evaluate_eps",
    "replay_eps_1proc",
    "replay_eps_2proc",
    "kafka_eps",
    "latency_p50_ms",
    "latency_p99_ms",
    "bytes_per_user",
    "bytes_per_item",
    "snapshot_bytes_per_epoch",
)


@dataclass(frozen=True)
class Row:
    label: str
    value: Callable[[dict[str, Any]], float]
    unit: str
    target: str = ""
    met: Callable[[float], bool] | None = None


def _ratio(top: str, bottom: str) -> Callable[[dict[str, Any]], float]:
    """``top / bottom``; of several rounds (``NAME_runs``), the median of each round's ratio: a
    round runs both parts within a minute, and this shared machine's speed drifts more than
    that between rounds."""

    def ratio(figures: dict[str, Any]) -> float:
        tops = figures.get(f"{top}_runs") or [figures[top]]
        bottoms = figures.get(f"{bottom}_runs") or [figures[bottom]] * len(tops)
        if len(tops) != len(bottoms):  # a part failed in some round
            return figures[top] / figures[bottom]
        return statistics.median(a / b for a, b in zip(tops, bottoms, strict=True))

    return ratio


def _key(name: str) -> Callable[[dict[str, Any]], float]:
    return lambda figures: figures[name]


ROWS = [
    Row("passthrough (parse, key, state, serialise)", _key("passthrough_eps"), "events/s"),
    Row("sequential engine (evaluate)", _key("evaluate_eps"), "events/s"),
    Row("replay, 1 process", _key("replay_eps_1proc"), "events/s", ">= 5,000", lambda v: v >= 5000),
    Row("replay, 2 processes", _key("replay_eps_2proc"), "events/s"),
    Row("replay lists, 1 process", _key("replay_lists_per_s_1proc"), "lists/s"),
    Row("replay lists, 2 processes", _key("replay_lists_per_s_2proc"), "lists/s"),
    Row(
        "replay 1 proc / evaluate",
        _ratio("replay_eps_1proc", "evaluate_eps"),
        "x",
        ">= 0.8",
        lambda v: v >= 0.8,
    ),
    Row(
        "replay 2 proc / 1 proc",
        _ratio("replay_eps_2proc", "replay_eps_1proc"),
        "x",
        ">= 1.6",
        lambda v: v >= 1.6,
    ),
    Row(
        "two 1-proc replays at once / 1 proc",
        _ratio("replay_eps_2copies", "replay_eps_1proc"),
        "x",
    ),
    Row(
        "replay 2 proc / two 1-proc at once",
        _ratio("replay_eps_2proc", "replay_eps_2copies"),
        "x",
    ),
    Row("replay 1 proc share of passthrough", _ratio("replay_eps_1proc", "passthrough_eps"), "x"),
    Row(
        "HR@10 replay 2 proc / evaluate",
        _ratio("replay_hr10_2proc", "evaluate_hr10"),
        "x",
        "0.98-1.02",
        lambda v: 0.98 <= v <= 1.02,
    ),
    Row(
        "Kafka sustained (default window)",
        _key("kafka_eps"),
        "events/s",
        ">= 5,000",
        lambda v: v >= 5000,
    ),
    Row("Kafka sustained (a list per event)", _key("kafka_eps_list_per_event"), "events/s"),
    Row("latency p50 at half that rate", _key("latency_p50_ms"), "ms"),
    Row("latency p95", _key("latency_p95_ms"), "ms"),
    Row("latency p99", _key("latency_p99_ms"), "ms", "<= 250", lambda v: v <= 250),
    Row("memory per user", lambda f: f["bytes_per_user"] / 1024, "KB", "<= 3", lambda v: v <= 3),
    Row("memory per item", lambda f: f["bytes_per_item"] / 1024, "KB", "<= 20", lambda v: v <= 20),
    Row(
        "RSS trend, idle users expiring",
        _key("idle_rss_slope_mb_per_min"),
        "MB/min",
        "flat (<= 1/5 of no expiry)",
        None,
    ),
    Row("RSS trend, no expiry", _key("idle_rss_slope_no_expiry_mb_per_min"), "MB/min"),
    Row(
        "kept training lists per replica (at most)",
        lambda f: f["kept_lists_cap_bytes"] / 2**20,
        "MB",
    ),
    Row(
        "RSS trend in process, expiring",
        _key("idle_rss_slope_in_process_mb_per_min"),
        "MB/min",
    ),
    Row(
        "RSS trend in process, no expiry",
        _key("idle_rss_slope_in_process_no_expiry_mb_per_min"),
        "MB/min",
    ),
    Row("snapshot per epoch (largest)", lambda f: f["snapshot_bytes_per_epoch"] / 1024, "KB"),
    Row("snapshot time per epoch", lambda f: f["snapshot_seconds_per_epoch"] * 1000, "ms"),
]


def json_object(results: Results) -> dict[str, Any]:
    return {
        **dict.fromkeys(REQUIRED),
        **results.figures,
        "profile_seconds": results.profile,
        "failures": results.failures,
        "notes": results.notes,
    }


def _verdict(row: Row, value: float, figures: dict[str, Any]) -> str:
    if row.label.startswith("RSS trend, idle"):
        kept = figures.get("idle_rss_slope_no_expiry_mb_per_min")
        if kept is None:
            return ""
        return "met" if value <= max(kept, 0) / 5 else "not met"
    if row.met is None:
        return ""
    return "met" if row.met(value) else "not met"


def table(results: Results) -> str:
    figures = results.figures
    lines = [f"{'figure':<40} {'value':>12} {'unit':<9} {'target':<24} verdict"]
    for row in ROWS:
        try:
            value = row.value(figures)
        except (KeyError, TypeError, ZeroDivisionError):
            lines.append(f"{row.label:<40} {'-':>12} {row.unit:<9} {row.target:<24} (no figure)")
            continue
        shown = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
        verdict = _verdict(row, value, figures)
        lines.append(f"{row.label:<40} {shown:>12} {row.unit:<9} {row.target:<24} {verdict}")
    lines += ["", *profile_lines(results.profile), "", *results.notes]
    lines += [f"FAILED {part}: {reason}" for part, reason in results.failures.items()]
    return "\n".join(lines)


def profile_lines(spent: dict[str, float]) -> list[str]:
    total = sum(spent.values())
    if not total:
        return []
    lines = ["where one process of the live job spends its time (pyinstrument):"]
    for name, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        lines.append(f"  {seconds / total:6.1%}  {seconds:6.1f} s  {name}")
    return lines


#: The throughput bars: (figure, label); Kafka's target is issue 10's.
_THROUGHPUT = (
    ("passthrough_eps", "passthrough\n(no recommender)"),
    ("evaluate_eps", "sequential engine\n(evaluate)"),
    ("replay_eps_1proc", "replay,\n1 process"),
    ("replay_eps_2proc", "replay,\n2 processes"),
    ("replay_eps_2copies", "two 1-process\nreplays at once"),
    ("kafka_eps", "Kafka end to end,\n1 process"),
    ("kafka_eps_list_per_event", "Kafka end to end,\na list per event"),
)
KAFKA_TARGET_EPS = 5_000
LATENCY_TARGET_MS = 250


def plot(results: Results, path: Path) -> None:
    """Throughput of each way to run the job, the event-to-list latency (log scale) and the RSS
    of the live job while users go idle, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    figures = results.figures
    figure, (speed, latency, rss) = plt.subplots(
        1, 3, figsize=(17, 5.2), layout="constrained", width_ratios=(1.2, 1.1, 1)
    )
    source = results.notes[0].removeprefix("input: ") if results.notes else "the bundled sample"
    count, _, where = source.partition(" of ")
    figure.suptitle(f"streamrec bench: {count} of {Path(where).name or source}", fontsize=13)

    bars = [(label, figures[key]) for key, label in _THROUGHPUT if figures.get(key) is not None]
    if bars:
        labels, rates = zip(*bars, strict=True)
        positions = range(len(bars))
        speed.barh(positions, rates, color="tab:blue")
        speed.set_yticks(list(positions), labels)
        speed.invert_yaxis()
        for position, rate in zip(positions, rates, strict=True):
            speed.annotate(
                f"{rate:,.0f}",
                (rate, position),
                xytext=(4, 0),
                textcoords="offset points",
                va="center",
                fontsize=9,
                bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none"},
                zorder=3,
            )
        speed.axvline(
            KAFKA_TARGET_EPS,
            color="tab:red",
            linestyle="--",
            zorder=2,
            label="target of Kafka and replay: 5,000/s",
        )
        speed.set_xlim(right=max(rates) * 1.25)
        speed.legend(loc="lower right")
    # Thousands, at most five ticks: full numbers ran into each other past 150,000.
    speed.xaxis.set_major_locator(MaxNLocator(5))
    speed.xaxis.set_major_formatter(
        FuncFormatter(lambda value, _: f"{value / 1000:,.0f}k" if value else "0")
    )
    speed.set(title="throughput", xlabel="events per second (higher is better)")
    speed.grid(axis="x", alpha=0.3)

    if results.latencies_ms:
        values = np.clip(np.asarray(results.latencies_ms), 0.1, None)
        bins = np.geomspace(values.min(), values.max(), 50)
        latency.hist(values, bins=bins, color="tab:green", alpha=0.8)
        latency.set_xscale("log")
        for share, style in ((50, "-"), (95, "--"), (99, ":")):
            value = figures[f"latency_p{share}_ms"]
            latency.axvline(
                value, color="black", linestyle=style, label=f"p{share}  {value:.0f} ms"
            )
        latency.axvline(
            LATENCY_TARGET_MS, color="tab:red", linestyle="--", label="target p99 250 ms"
        )
        latency.legend(loc="best", framealpha=0.9)
    latency.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    rate = figures.get("latency_rate_eps", 0)
    latency.set(
        title=f"event to list latency at {rate:,.0f} events/s (a list per event)",
        xlabel="milliseconds, log scale",
        ylabel="events",
    )
    latency.grid(alpha=0.3)

    series = results.rss
    if series is not None:
        for name, values in series.rss_mb.items():
            rss.plot(series.seconds, values, label=name, linewidth=2)
        rss.legend(loc="upper left", title="live job")
    slope = figures.get("idle_rss_slope_mb_per_min")
    trend = "" if slope is None else f"\ngrowth {slope:.1f} MB/min with expiry"
    rss.set(
        title=f"memory while every user goes idle after 4 events{trend}",
        xlabel="seconds since the first event",
        ylabel="resident set size (MB)",
    )
    rss.grid(alpha=0.3)
    figure.savefig(path, dpi=110)
    plt.close(figure)
