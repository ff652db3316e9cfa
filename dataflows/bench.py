"""``streamrec bench``: the performance figures of issue 10, measured in one run.

The parts live in ``tests/benchmarks/`` (``suite.py`` drives them) with the Kafka helpers of
``tests/`` and ``deploy/kafka/``, so the command needs a clone of the repository, not just the
installed package.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from dataflows.errors import UsageError

BENCHMARKS = Path(__file__).resolve().parents[1] / "tests" / "benchmarks"


def main(args: argparse.Namespace) -> int:
    if not (BENCHMARKS / "suite.py").is_file():
        raise UsageError(f"streamrec bench runs from a clone of the repository: no {BENCHMARKS}")
    if args.events and not Path(args.events).is_file():
        raise UsageError(f"no such events file: {args.events}")
    try:
        importlib.import_module("pyinstrument")
    except ImportError:
        raise UsageError("the profile needs pyinstrument: pip install -e '.[dev]'") from None
    sys.path.insert(0, str(BENCHMARKS))
    suite = importlib.import_module("suite")
    return suite.main(args)
