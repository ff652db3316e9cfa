"""HR@10 of streamrec, its ablations and the baselines on streams of different shapes (prints
figures, asserts nothing).

Generates every synthetic shape (:data:`operators.synthetic.SHAPES`, each at its own size
unless ``--events`` is given) into a temporary folder, runs
``python -m dataflows evaluate FILE --baselines --ablation --json`` on each, one after the
other, and prints one markdown table: stream, model, HR@10 and the ratio to the best baseline.
The models are whatever the evaluate JSON holds, so new baselines or ablations show up as they
are added::

    .venv/bin/python tests/benchmarks/quality.py [--shapes ratings drift] [--events 100000]
        [--retail /tmp/retail.jsonl.gz] [--otto /work/shared/datasets/otto-sample/train.jsonl]
        [--live]

``--retail`` takes an imported Online Retail file, ``--otto`` the raw OTTO JSON Lines (imported
here with ``streamrec import otto``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from operators import synthetic

BASELINES = "baselines"


@dataclass(frozen=True)
class Row:
    stream: str
    model: str
    hr: float
    best_baseline: float | None


def _dataflows(*arguments: str) -> str:
    """Run ``python -m dataflows`` with ``arguments``; its stdout (stderr passes through)."""
    command = [sys.executable, "-m", "dataflows", *arguments]
    return subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout


def _hr(metrics: dict[str, float]) -> float:
    return next(value for name, value in metrics.items() if name.startswith("hr@"))


def evaluate(stream: str, path: Path, *options: str) -> list[Row]:
    """One row per model of ``streamrec evaluate --baselines --ablation --json`` on ``path``
    (with ``options`` too)."""
    started = time.perf_counter()
    output = _dataflows("evaluate", str(path), "--baselines", "--ablation", "--json", *options)
    document = orjson.loads(output)
    print(f"{stream}: evaluated in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    models = {"streamrec": document["streamrec"]}
    for section, reports in document.items():
        if isinstance(reports, dict) and section != "streamrec":
            models.update({f"{section}/{name}": metrics for name, metrics in reports.items()})
    baseline_hrs = [_hr(metrics) for metrics in document.get(BASELINES, {}).values()]
    best = max(baseline_hrs, default=None)
    return [Row(stream, model, _hr(metrics), best) for model, metrics in models.items()]


def generate(shape: str, events: int | None, seed: int, folder: Path) -> Path:
    fields = {"seed": seed} if events is None else {"seed": seed, "events": events}
    config = synthetic.shape_config(shape, **fields)
    path = folder / f"{shape}.jsonl"
    started = time.perf_counter()
    written = synthetic.write_stream(config, path)
    elapsed = time.perf_counter() - started
    print(
        f"{shape}: {written:,} events, {config.users:,} users, {config.items:,} items, "
        f"generated in {elapsed:.1f} s ({written / elapsed:,.0f} events/s)",
        file=sys.stderr,
    )
    return path


def table(rows: list[Row]) -> str:
    lines = ["| stream | model | HR@10 | / best baseline |", "| --- | --- | --- | --- |"]
    for row in rows:
        ratio = "-" if not row.best_baseline else f"{row.hr / row.best_baseline:.2f}"
        lines.append(f"| {row.stream} | {row.model} | {row.hr:.4f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", choices=list(synthetic.SHAPES))
    parser.add_argument("--events", type=int, help="events per shape (default: the shape's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--retail", type=Path, help="an imported Online Retail file")
    parser.add_argument("--otto", type=Path, help="raw OTTO JSON Lines, imported here")
    parser.add_argument(
        "--live", action="store_true", help="score the lists the live job serves (evaluate --live)"
    )
    args = parser.parse_args()
    options = ["--live"] if args.live else []
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for shape in args.shapes or synthetic.SHAPES:
            rows += evaluate(shape, generate(shape, args.events, args.seed, folder), *options)
        if args.retail:
            rows += evaluate("online-retail", args.retail, *options)
        if args.otto:
            otto = folder / "otto.jsonl"
            _dataflows("import", "otto", str(args.otto), str(otto))
            rows += evaluate("otto", otto, *options)
    print(table(rows))


if __name__ == "__main__":
    main()
