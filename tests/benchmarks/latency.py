"""Event-to-list latency of the live job at one rate, and when its slowest events came (prints
figures).

python tests/benchmarks/latency.py [--rate 1500] [--seconds 60] [--backlog FILE]

The latency part of ``streamrec bench`` alone, in about two minutes: a local Kafka broker and
``streamrec run`` with a list per event and recovery on; the first ``--backlog-events`` of
``--backlog`` (a recorded stream) worked through first, as fast as the job goes; then synthetic
events produced at ``--rate`` for ``--seconds``. Prints p50/p90/p95/p99/max in ms, the seconds
after the first paced event at which the slowest 1% were produced (clusters
``recovery.snapshot_interval_s`` apart are the epochs' snapshots) and the job's snapshot time
per epoch.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import kafka_e2e

from operators import jsonl


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1_500.0, help="paced events per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to pace them")
    parser.add_argument("--backlog", type=Path, help="a JSON Lines stream to work through first")
    parser.add_argument("--backlog-events", type=int, default=30_000)
    args = parser.parse_args()
    if args.backlog is not None and not args.backlog.exists():
        parser.error(f"no such file or directory: {args.backlog}")
    if args.rate <= 0 or args.seconds <= 0:
        parser.error("--rate and --seconds must be positive")
    try:
        with kafka_e2e.broker() as kafka, tempfile.TemporaryDirectory() as scratch:
            topics = kafka_e2e.new_topics(kafka, "latency")
            overrides = kafka_e2e.LIST_PER_EVENT
            with kafka_e2e.live_job(kafka, topics, Path(scratch) / "job", overrides) as (
                job,
                arrivals,
            ):
                if args.backlog is not None:
                    backlog = list(islice(jsonl.read_lines(args.backlog), args.backlog_events))
                    rate = kafka_e2e.sustained_eps(
                        kafka.bootstrap, topics.events, backlog, job, arrivals
                    )
                    print(f"backlog: {len(backlog):,} events at {rate:,.0f} events/s")
                paced = kafka_e2e.synthetic_lines(round(args.rate * args.seconds), 20_000, seed=1)
                latencies, missed = kafka_e2e.latencies_ms(
                    kafka.bootstrap, topics.events, paced, args.rate, job, arrivals
                )
                snapshots = kafka_e2e.snapshots(job)
    except kafka_e2e.local_kafka.LocalKafkaError as error:
        sys.exit(f"latency.py: the local Kafka broker could not start: {error}")
    except kafka_e2e.JobError as error:
        sys.exit(f"latency.py: {error}")
    if not latencies:
        sys.exit(f"latency.py: none of the {missed:,} paced events got a list")
    shares = ", ".join(
        f"p{round(share * 100)} {kafka_e2e.percentile(latencies, share):.0f}"
        for share in (0.5, 0.9, 0.95, 0.99)
    )
    print(
        f"{len(latencies):,} events at {args.rate:,.0f}/s ({missed} without a list): {shares}, "
        f"max {max(latencies):.0f} ms"
    )
    count = max(1, len(latencies) // 100)
    slowest = sorted(range(len(latencies)), key=latencies.__getitem__)[-count:]
    seconds = sorted({round(index / args.rate, 1) for index in slowest})
    print(f"slowest 1% produced at (s): {', '.join(map(str, seconds))}")
    print(
        f"snapshots: {snapshots.bytes_per_epoch[-1] / 1e6:.1f} MB per epoch, "
        f"{snapshots.seconds_per_epoch * 1000:.0f} ms each"
    )


if __name__ == "__main__":
    main()
