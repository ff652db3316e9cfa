"""Time and drop counts of importing the shared Online Retail data set (prints figures).

python tests/benchmarks/import_speed.py [path to online_retail.csv.gz]
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from operators import importers

SHARED = Path(__file__).resolve().parents[3] / "shared"
DEFAULT_SOURCE = SHARED / "datasets" / "online-retail" / "online_retail.csv.gz"


def main() -> None:
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_SOURCE
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        count = importers.import_dataset("online-retail", source, Path(folder) / "r.jsonl.gz")
        elapsed = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(count.summary())
    rate = count.written / elapsed
    print(f"{elapsed:.1f} s, {rate:,.0f} kept events/s, peak RSS {peak_mb:,.0f} MB")


if __name__ == "__main__":
    main()
