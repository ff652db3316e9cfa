"""Pretrain, then keep learning: HR@10 on a stream's second half after a pretrain on its first
(prints figures, asserts nothing).

Splits a recorded stream (in time order) at the middle event, runs ``streamrec pretrain`` on the
first half and ``streamrec evaluate SECOND --warm-start DIR --baselines --ablation --json`` on
the second (``--live``: with ``--live`` too), and prints one markdown table: streamrec pretrained
and learning online, the same frozen, from a cold start, and each ablation and baseline (the
baselines start cold)::

    .venv/bin/python tests/benchmarks/transfer.py /tmp/retail.jsonl.gz [--live]
"""

from __future__ import annotations

import argparse
import gzip
import subprocess
import sys
import tempfile
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from operators.jsonl import read_lines


def _dataflows(*arguments: str) -> str:
    command = [sys.executable, "-m", "dataflows", *arguments, "--quiet"]
    return subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True).stdout


def split(path: Path, folder: Path) -> tuple[Path, Path]:
    """The stream's first and second half by event time (ties stay in file order)."""
    lines = sorted(read_lines(path), key=lambda line: orjson.loads(line).get("ts", 0))
    middle = len(lines) // 2
    halves = folder / "first.jsonl.gz", folder / "second.jsonl.gz"
    for half, part in zip(halves, (lines[:middle], lines[middle:]), strict=True):
        with gzip.open(half, "wb") as out:
            out.writelines(line if line.endswith(b"\n") else line + b"\n" for line in part)
    print(f"{path}: {middle:,} + {len(lines) - middle:,} events", file=sys.stderr)
    return halves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("events", type=Path, help="a recorded stream (JSON Lines, optionally .gz)")
    parser.add_argument(
        "--live", action="store_true", help="score the lists the live job serves (evaluate --live)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        first, second = split(args.events, folder)
        _dataflows("pretrain", str(first), "--out", str(folder / "warm"))
        output = _dataflows(
            "evaluate",
            str(second),
            "--warm-start",
            str(folder / "warm"),
            "--baselines",
            "--ablation",
            "--json",
            *(["--live"] if args.live else []),
        )
    document = orjson.loads(output)
    rows = [("streamrec, pretrained, learning online", document["streamrec"]["hr@10"])]
    for section in ("ablation", "baselines"):
        rows += [(f"{section}/{model}", m["hr@10"]) for model, m in document[section].items()]
    print("| model on the second half | HR@10 |\n| --- | --- |")
    for model, hr in rows:
        print(f"| {model} | {hr:.4f} |")


if __name__ == "__main__":
    main()
