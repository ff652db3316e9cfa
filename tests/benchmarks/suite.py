"""``streamrec bench``: every throughput, latency, memory and recovery figure in one run.

The parts run one after the other on the same machine, so their ratios mean something even
when the machine is shared. A part that fails is reported with its reason and the others still
run; its figures are null in ``--json``. The local Kafka broker is started for the Kafka parts
and stopped at the end, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))

import kafka_e2e
import speed
from profiling import profile_job

from operators.config import load_config

BUNDLED = (
    Path(__file__).resolve().parents[2] / "dataflows" / "data" / "online_retail_sample.jsonl.gz"
)
MEMORY_SCRIPT = Path(__file__).resolve().parent / "memory.py"


@dataclass(frozen=True)
class Scale:
    """How much each part does: the quick run trades precision for time."""

    events: int | None  # first events of the input for the file and Kafka parts (None: all)
    list_per_event_backlog: int  # events for the sustained rate with a list per event
    latency_s: float
    idle_s: float
    idle_rate: float
    memory_users: int  # the memory part runs this many users and half as many
    memory_items: int
    memory_served: int  # users whose lists are served (the rest only learned: serving is slow)
    idle_in_process_s: float
    #: Interleaved rounds of the file parts; each figure is its best round (noise only slows).
    rounds: int


QUICK = Scale(
    events=10_000,
    list_per_event_backlog=2_000,
    latency_s=12,
    idle_s=14,
    idle_rate=300,
    memory_users=100_000,
    memory_items=10_000,
    memory_served=2_000,
    idle_in_process_s=20,
    rounds=1,
)
FULL = Scale(
    events=None,
    list_per_event_backlog=10_000,
    latency_s=60,
    idle_s=60,
    idle_rate=300,
    memory_users=1_000_000,
    memory_items=100_000,
    memory_served=20_000,
    idle_in_process_s=60,
    rounds=3,
)


@dataclass
class Results:
    figures: dict[str, Any] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    rss: kafka_e2e.RssSeries | None = None
    latencies_ms: list[float] = field(default_factory=list)
    profile: dict[str, float] = field(default_factory=dict)

    def part(self, name: str, run: Callable[[], None]) -> None:
        """Run one part; an error becomes a one-line failure of that part."""
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        started = time.perf_counter()
        try:
            run()
        except Exception as error:  # any part's failure is reported, the others still run
            self.failures[name] = _reason(error)
            print(f"bench: {name} failed: {self.failures[name]}", file=sys.stderr, flush=True)
        else:
            print(f"bench: {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr)


def _reason(error: Exception) -> str:
    if isinstance(error, speed.CommandError | kafka_e2e.JobError):
        return str(error)
    if isinstance(error, subprocess.CalledProcessError):
        stderr = (error.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        return f"{' '.join(map(str, error.cmd[-6:]))} exited with {error.returncode}: {stderr}"
    where = traceback.extract_tb(error.__traceback__)[-1]
    return f"{type(error).__name__}: {error} ({Path(where.filename).name}:{where.lineno})"


def file_parts(
    results: Results,
    events: Path,
    scratch: Path,
    rounds: int,
) -> None:
    """Throughput over the file, in ``rounds`` interleaved rounds: each rate is the best of its
    runs, each HR@10 their median (all kept in ``NAME_runs``; the report's ratios are the median
    of each round's), so that neither stands for whatever else the machine did while one part
    ran. Between the two replays of a round, two 1-process replays at once
    (:func:`speed.replays_at_once`): what the machine gives this job from a second process that
    shares nothing, the 2-process replay's yardstick."""
    config = load_config(None)
    count = len(events.read_bytes().splitlines())
    figures = results.figures

    def keep(name: str, value: float, pick: Callable[[list[float]], float] = max) -> None:
        runs = figures.setdefault(f"{name}_runs", [])
        runs.append(value)
        figures[name] = pick(runs)

    def passthrough() -> None:
        passed = speed.passthrough_eps(events, count, scratch / "passthrough.jsonl", config)
        keep("passthrough_eps", passed)

    def evaluate() -> None:
        events_per_s, figures["evaluate_hr10"] = speed.evaluate_eps(events)
        keep("evaluate_eps", events_per_s)

    def replay(processes: int) -> Callable[[], None]:
        def run() -> None:
            replayed = speed.replay(events, scratch / f"replay-{processes}.jsonl", processes)
            keep(f"replay_eps_{processes}proc", replayed.events_per_s)
            keep(f"replay_lists_per_s_{processes}proc", replayed.lists_per_s)
            keep(f"replay_hr10_{processes}proc", replayed.hr_at_10, statistics.median)

        return run

    def copies() -> None:
        keep("replay_eps_2copies", speed.replays_at_once(events, scratch, copies=2))

    for number in range(1, rounds + 1):
        suffix = f" (round {number} of {rounds})" if rounds > 1 else ""
        results.part(f"passthrough{suffix}", passthrough)
        results.part(f"evaluate{suffix}", evaluate)
        results.part(f"replay 1 process{suffix}", replay(1))
        results.part(f"two 1-process replays at once{suffix}", copies)
        results.part(f"replay 2 processes{suffix}", replay(2))
    if rounds > 1:
        results.notes.append(
            f"file parts: {rounds} interleaved rounds (all in *_runs): best events/s, median "
            "HR@10, ratios the median of each round's"
        )


def kafka_parts(results: Results, events: Path, scale: Scale, scratch: Path) -> None:
    try:
        with kafka_e2e.broker() as kafka:
            _kafka_parts(results, kafka, events.read_bytes().splitlines(), scale, scratch)
    except kafka_e2e.local_kafka.LocalKafkaError as error:
        results.failures["kafka"] = f"the local Kafka broker could not start: {error}"


def _kafka_parts(
    results: Results, kafka: Any, lines: list[bytes], scale: Scale, scratch: Path
) -> None:
    figures = results.figures
    backlog = kafka_e2e.new_topics(kafka, "throughput")

    def throughput() -> None:
        with kafka_e2e.live_job(kafka, backlog, scratch / "throughput", {}) as (job, arrivals):
            figures["kafka_eps"] = kafka_e2e.sustained_eps(
                kafka.bootstrap, backlog.events, lines, job, arrivals
            )

    def latency() -> None:
        topics = kafka_e2e.new_topics(kafka, "latency")
        overrides = kafka_e2e.LIST_PER_EVENT
        with kafka_e2e.live_job(kafka, topics, scratch / "latency", overrides) as (job, arrivals):
            backlog_lines = lines[: scale.list_per_event_backlog]
            rate = kafka_e2e.sustained_eps(
                kafka.bootstrap, topics.events, backlog_lines, job, arrivals
            )
            figures["kafka_eps_list_per_event"] = rate
            paced = kafka_e2e.synthetic_lines(round(rate / 2 * scale.latency_s), 20_000, seed=1)
            latencies, missed = kafka_e2e.latencies_ms(
                kafka.bootstrap, topics.events, paced, rate / 2, job, arrivals
            )
            results.latencies_ms = latencies
            for share in (50, 95, 99):
                figures[f"latency_p{share}_ms"] = kafka_e2e.percentile(latencies, share / 100)
            figures["latency_rate_eps"] = rate / 2
            figures["latency_unanswered"] = missed
            results.notes.append(
                f"latency: window.length_s 0 (a list per event, matched by user and as_of), "
                f"{len(latencies):,} events at {rate / 2:,.0f}/s, {missed} without a list"
            )
            stored = kafka_e2e.snapshots(job)
            figures["snapshot_bytes_per_epoch"] = max(stored.bytes_per_epoch)
            figures["snapshot_epochs"] = len(stored.bytes_per_epoch)
            figures["snapshot_seconds_per_epoch"] = stored.seconds_per_epoch
            results.notes.append(
                f"recovery: {len(stored.bytes_per_epoch)} epochs of "
                f"{load_config(None).recovery.snapshot_interval_s} s in the latency job's SQLite "
                "partitions (bytes of ser_change per snap_epoch); time from its Prometheus "
                "snapshot/partd_write duration sums"
            )

    def idle_users() -> None:
        shared = kafka_e2e.new_topics(kafka, "idle")
        expiring = {"state": {"user_idle_expire_s": 2.0}}
        kept = kafka_e2e.new_topics(kafka, "idle-kept")
        with (
            kafka_e2e.live_job(kafka, shared, scratch / "idle", expiring) as (expiry, _),
            kafka_e2e.live_job(
                kafka,
                kafka_e2e.Topics(shared.events, kept.out, kept.dead),
                scratch / "idle-kept",
                {},
            ) as (no_expiry, _),
        ):
            jobs = {"users expire after 2 s idle": expiry, "no expiry (365 days)": no_expiry}
            stream = kafka_e2e.one_time_users(scale.idle_rate, scale.idle_s)
            series = kafka_e2e.rss_while_users_go_idle(
                kafka.bootstrap, shared.events, stream, scale.idle_rate, jobs
            )
        results.rss = series
        names = list(jobs)
        figures["idle_rss_slope_mb_per_min"] = series.late_slope_mb_per_min(names[0])
        figures["idle_rss_slope_no_expiry_mb_per_min"] = series.late_slope_mb_per_min(names[1])

    def profile() -> None:
        config_path = scratch / "profile.yaml"
        out = kafka_e2e.new_topics(kafka, "profile")
        kafka_e2e.write_config(
            config_path,
            kafka.bootstrap,
            backlog.events,
            out.out,
            out.dead,
            tail=False,
            snapshot_interval_s=load_config(None).recovery.snapshot_interval_s,
        )
        spent, wall = profile_job(load_config(config_path))
        results.profile = spent
        figures["profile_wall_s"] = wall

    results.part("kafka throughput", throughput)
    results.part("kafka latency and recovery", latency)
    results.part("RSS while users go idle", idle_users)
    results.part("profile", profile)


def memory_part(results: Results, scale: Scale) -> None:
    """Two processes in parallel, with all and with half the users over the same catalogue:
    their difference is the users' share of the RSS growth; the rest, less the replica's kept
    training lists (measured apart: a fixed cost, at most ``open_lists``), the items'. Then the
    RSS trend of one process while users go idle, with and without expiry."""
    figures = results.figures

    def users() -> None:
        size = ["--items", str(scale.memory_items), "--served", str(scale.memory_served)]
        counts = (scale.memory_users, scale.memory_users // 2)
        whole, half = _memory_runs([["users", "--users", str(count), *size] for count in counts])
        per_user = (whole["rss_growth_bytes"] - half["rss_growth_bytes"]) / (
            whole["users"] - half["users"]
        )
        per_list = whole["kept_lists_bytes"] / max(whole["kept_lists"], 1)
        figures["bytes_per_user"] = per_user
        figures["bytes_per_item"] = (
            whole["rss_growth_bytes"] - per_user * whole["users"] - whole["kept_lists_bytes"]
        ) / whole["items"]
        figures["kept_list_bytes"] = per_list
        figures["kept_lists_cap_bytes"] = per_list * load_config(None).engine.open_lists
        figures["memory_users"], figures["memory_items"] = whole["users"], whole["items"]
        results.notes.append(
            f"memory: RSS growth of {whole['users']:,} users (UserLogic, UserState, one "
            f"ModelReplica) over {whole['items']:,} items, per user from the difference to a run "
            f"with {half['users']:,}; {whole['served_users']:,} users' lists served (serving "
            "is slow), their kept training lists counted apart"
        )

    def idle() -> None:
        seconds = ["idle", "--seconds", str(scale.idle_in_process_s)]
        expiring, kept = _memory_runs([[*seconds, "--expiry-s", "2"], seconds])
        figures["idle_rss_slope_in_process_mb_per_min"] = expiring["rss_slope_mb_per_min"]
        figures["idle_rss_slope_in_process_no_expiry_mb_per_min"] = kept["rss_slope_mb_per_min"]

    results.part("memory", users)
    results.part("RSS while users go idle, in process", idle)


def _memory_runs(arguments: list[list[str]]) -> list[dict[str, Any]]:
    """``memory.py`` with each argument list, all at once; their JSON objects."""
    launched = [
        subprocess.Popen(
            [sys.executable, str(MEMORY_SCRIPT), *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for args in arguments
    ]
    return [_json_of(process) for process in launched]


def _json_of(process: subprocess.Popen[bytes]) -> dict[str, Any]:
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        lines = stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"memory.py exited with {process.returncode}: {' | '.join(lines)}")
    return orjson.loads(stdout)


def run(events: Path | None, quick: bool) -> Results:
    scale = QUICK if quick else FULL
    results = Results()
    with tempfile.TemporaryDirectory(prefix="streamrec-bench-") as folder:
        scratch = Path(folder)
        source = events or BUNDLED
        sample = scratch / "events.jsonl"
        results.figures["events"] = speed.head(source, scale.events, sample)
        results.notes.append(f"input: {results.figures['events']:,} events of {source}")
        file_parts(results, sample, scratch, scale.rounds)
        kafka_parts(results, sample, scale, scratch)
        memory_part(results, scale)
    return results


def main(args: argparse.Namespace) -> int:
    from report import json_object, plot, table

    results = run(Path(args.events) if args.events else None, args.quick)
    if args.json:
        print(orjson.dumps(json_object(results)).decode())
    else:
        print(table(results))
    if args.plot:
        plot(results, Path(args.plot))
    return 1 if results.failures else 0
