"""``streamrec run``: the Kafka-to-Kafka job under ``python -m bytewax.run``, recovery on.

This is a thin launcher. It checks what a user can get wrong (config, cluster options, the
recovery store, the Kafka topics) and reports it in one line, creates the recovery partitions on
the first start (and the topics when ``kafka.create_topics`` allows it), then runs ``python -m
bytewax.run dataflows.recommend:flow`` as its child. The dataflow reads the config from the
``STREAMREC_CONFIG`` environment variable, which this launcher sets to the file it checked, and
logs one "ready" line once it is built and resumed.

Forgotten users leave no trace in the store: the launcher scrubs it (:func:`scrub_store`)
before the job starts and after it ends, since the store holds the keys of deleted state and
SQLite the bytes of deleted rows until then.

SIGINT and SIGTERM stop the job: the launcher passes SIGINT on to Bytewax, which stops at once;
the next start resumes from the last snapshot in the recovery store (delivery is at-least-once).
Bytewax reports that stop as a panic with exit 1; the launcher keeps it to itself, logs one
"stopped" line and exits 0. Any other end of the child is passed through with its exit code.
The child dies with the launcher (``kill -9`` of the launcher is ``kill -9`` of the job).

A cluster is ``-i`` (this process) plus ``-a`` (every process, this one included). In a
Kubernetes StatefulSet ``-i`` may be the pod name, whose ordinal suffix is the process id, and
``-a`` a template with ``{i}`` expanded for ``--processes`` ordinals:

>>> process_index("streamrec-2")
2
>>> expand_addresses("streamrec-{i}.streamrec:2101", processes=2)
['streamrec-0.streamrec:2101', 'streamrec-1.streamrec:2101']

Recovery partitions. Bytewax snapshots state into a fixed set of SQLite partitions, created
before the first start; their count is written into them and can never change. It is
:data:`PARTITIONS` (12), not a config key, so that nobody can change it by accident: Bytewax
advises at least as many partitions as the most workers you will ever scale to, and 12 divides
evenly over 1, 2, 3, 4, 6 and 12 processes. Each process keeps its share in its own directory,
the way a pod keeps it on its own volume: process ``i`` of ``n`` creates partitions ``j`` with
``j % n == i`` when its directory holds none yet, and the cluster as a whole must see every
partition when it resumes.

>>> owned_partitions(12, process_id=1, processes=4)
[1, 5, 9]
"""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from dataflows.errors import UsageError, load_config_or_stop
from dataflows.logs import FORMAT_ENV, LEVEL_ENV, LOGGER, child_line, configure
from operators.config import Config, KafkaInput, KafkaTopic

#: Where the dataflow lives, as ``bytewax.run`` imports it.
FLOW = "dataflows.recommend:flow"
#: Recovery partitions of a new store (see the module docstring; never change it for a store).
PARTITIONS = 12
#: Recovery directory when neither ``--recovery-dir`` nor ``recovery.dir`` names one (relative to
#: the working directory): recovery is on unless ``--no-recovery``.
DEFAULT_RECOVERY_DIR = "streamrec-recovery"
#: How long a cluster process waits for its own address to resolve (a StatefulSet pod's DNS
#: record appears shortly after the pod starts; timely binds to that name and fails without it).
DNS_WAIT_S = 120.0
#: How long the launcher waits for the Kafka cluster to answer, and for created topics to serve.
KAFKA_WAIT_S = 10.0
#: What Bytewax prints when a signal stops it (a panic the launcher does not pass on).
_SIGNAL_STOP_MARKS = ("signal received", "KeyboardInterrupt")
_PR_SET_PDEATHSIG = 1

_ORDINAL = re.compile(r"(?:^|-)(\d+)$")
_PARTITION_FILE = re.compile(r"^part-(\d+)\.sqlite3$")


@dataclass(frozen=True)
class Cluster:
    """This process's place in a Bytewax cluster: its index and every process's host:port."""

    process_id: int
    addresses: list[str]

    @property
    def processes(self) -> int:
        return len(self.addresses)


@dataclass(frozen=True)
class Recovery:
    """Where this process keeps its recovery partitions and how often it snapshots."""

    #: The configured recovery directory; ``directory`` is ``base/process-<id>`` in a cluster.
    base: Path
    directory: Path
    partitions: int
    snapshot_interval_s: int
    backup_interval_s: int


@dataclass(frozen=True)
class Launch:
    """The exact command and environment ``main`` runs."""

    argv: list[str]
    env: dict[str, str]
    recovery: Recovery | None
    cluster: Cluster | None
    config: Config


def process_index(value: str) -> int:
    """The process id from ``-i``: a number, or a pod name ending in its ordinal."""
    match = _ORDINAL.search(value.strip())
    if match is None:
        raise UsageError(f"-i {value!r} is neither a process number nor a pod name like 'name-0'")
    return int(match.group(1))


def expand_addresses(template: str, processes: int) -> list[str]:
    """Every process's ``host:port`` from a template with ``{i}`` (the process ordinal)."""
    if processes < 1:
        raise UsageError(f"--processes must be at least 1, got {processes}")
    return [template.replace("{i}", str(ordinal)) for ordinal in range(processes)]


def parse_addresses(value: str, processes: int | None) -> list[str]:
    """``-a`` as a ``;``-separated list, a file with one address a line, or a ``{i}`` template."""
    if "{i}" in value:
        if processes is None:
            raise UsageError("-a with '{i}' needs --processes N")
        return expand_addresses(value, processes)
    path = Path(value)
    if ";" not in value and path.is_file():
        text = path.read_text(encoding="utf-8")
        addresses = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        addresses = [part.strip() for part in value.split(";") if part.strip()]
    if not addresses:
        raise UsageError(f"-a {value!r} names no address")
    for address in addresses:
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"address {address!r} is not host:port")
    if processes is not None and processes != len(addresses):
        raise UsageError(f"--processes {processes} but -a lists {len(addresses)} addresses")
    return addresses


def resolve_cluster(
    process_id: str | None, addresses: str | None, processes: int | None
) -> Cluster | None:
    """The cluster from ``-i``/``-a``/``--processes``, or None for a single process."""
    if process_id is None and addresses is None:
        if processes not in (None, 1):
            raise UsageError("--processes needs -i and -a")
        return None
    if process_id is None or addresses is None:
        raise UsageError("-i and -a go together: this process's id and every process's address")
    index = process_index(process_id)
    listed = parse_addresses(addresses, processes)
    if index >= len(listed):
        raise UsageError(f"process id {index} is not below the {len(listed)} addresses of -a")
    return Cluster(index, listed)


def owned_partitions(partitions: int, process_id: int, processes: int) -> list[int]:
    """The recovery partitions process ``process_id`` creates on the first start."""
    return [index for index in range(partitions) if index % processes == process_id]


def stored_partitions(directory: Path) -> dict[int, int]:
    """Partition index -> partition count of every recovery partition in ``directory``."""
    found: dict[int, int] = {}
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"the recovery directory {directory} is a file; name a directory")
    if not directory.is_dir():
        return found
    for path in sorted(directory.iterdir()):
        if _PARTITION_FILE.match(path.name) is None:
            continue
        try:
            with closing(sqlite3.connect(path)) as connection:
                # Bytewax reads the rest of the file only once running, and then panics.
                (verdict,) = connection.execute("PRAGMA quick_check(1)").fetchone()
                if verdict != "ok":
                    raise sqlite3.DatabaseError(" ".join(verdict.split()))
                rows = connection.execute("SELECT part_index, part_count FROM parts").fetchall()
        except sqlite3.DatabaseError as error:
            raise UsageError(
                f"{path} is not a readable recovery partition ({error}); restore the store from "
                f"a backup, or delete {directory} to start over with empty state (Kafka input "
                "then starts at input.starting_offset)"
            ) from None
        found.update((int(index), int(count)) for index, count in rows)
    return found


#: Deletion markers of keys that have no older snapshot: they say no more than a missing row.
_NEEDLESS_MARKERS = """
    DELETE FROM snaps WHERE ser_change IS NULL AND NOT EXISTS (
        SELECT 1 FROM snaps AS older
        WHERE older.step_id = snaps.step_id AND older.state_key = snaps.state_key
        AND older.snap_epoch < snaps.snap_epoch)
"""


def scrub_store(directory: Path) -> None:
    """Remove every trace of deleted state from this process's recovery partitions; only while
    no job uses them.

    Bytewax keeps a discarded key (a forgotten user) as a row with its key and no state, and
    SQLite leaves the bytes of deleted rows (the superseded snapshots) in its free space. Such a
    marker is dropped when no older snapshot of the key remains, and ``VACUUM`` rewrites the
    file without free space, so a forgotten user's id is in no byte of the store afterwards.
    """
    for path in sorted(directory.glob("part-*.sqlite3")):
        with closing(sqlite3.connect(path, isolation_level=None)) as connection:
            connection.execute(_NEEDLESS_MARKERS)
            connection.execute("VACUUM")


def check_layout(base: Path, cluster: Cluster | None) -> None:
    """Refuse a store laid out for a single process when running a cluster, and vice versa.

    Starting anyway would create a fresh, empty store beside the real one and silently drop
    the state; moving partition files between the layouts is a manual step (k8s/README.md).
    """
    if cluster is not None and stored_partitions(base):
        raise UsageError(
            f"{base} holds a single-process recovery store; move its part-*.sqlite3 files into "
            f"{base}/process-<id>/ directories (every partition exactly once) before starting "
            "a cluster"
        )
    if cluster is None and base.is_dir():
        shares = sorted(path.name for path in base.glob("process-*") if stored_partitions(path))
        if shares:
            raise UsageError(
                f"{base} holds a cluster's recovery store ({', '.join(shares)}); run with the "
                "same -i/-a, or move every partition into one directory first"
            )


def ensure_partitions(directory: Path, partitions: int, cluster: Cluster | None) -> list[int]:
    """Create this process's partitions if its directory has none; returns those created.

    An existing store must have been created with the same partition count.
    """
    found = stored_partitions(directory)
    if found:
        counts = sorted(set(found.values()))
        if counts != [partitions]:
            raise UsageError(
                f"the recovery store in {directory} has {counts} partitions, this version creates "
                f"{partitions}; the count cannot change: delete the store to start over"
            )
        # A cluster's processes may hold any share after a rescale; only one process must hold
        # every partition.
        missing = sorted(set(range(partitions)) - found.keys())
        if cluster is None and missing:
            raise UsageError(
                f"the recovery store in {directory} lacks partitions {missing} of {partitions}; "
                "restore their part-N.sqlite3 files from a backup, or delete the store to start "
                "over with empty state (Kafka input then starts at input.starting_offset)"
            )
        return []
    from bytewax.recovery import init_db_dir

    process_id, processes = (cluster.process_id, cluster.processes) if cluster else (0, 1)
    mine = owned_partitions(partitions, process_id, processes)
    directory.mkdir(parents=True, exist_ok=True)
    # Create the full set beside the store and move in only this process's share, so a crash
    # half-way leaves no partial store behind.
    with tempfile.TemporaryDirectory(prefix=".init-", dir=directory) as staging:
        init_db_dir(Path(staging), partitions)
        for index in mine:
            name = f"part-{index}.sqlite3"
            os.replace(Path(staging) / name, directory / name)
    return mine


def check_port_free(port: int) -> None:
    """Refuse a metrics port already taken: Bytewax would only log a panic and run unobserved."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as error:
            raise UsageError(
                f"metrics port {port} is not free ({error.strerror}); give each process on "
                "this host its own --metrics-port, or 0 to turn metrics off"
            ) from None


def wait_for_address(address: str, timeout_s: float) -> None:
    """Block until ``address``'s host resolves (this process binds to it)."""
    host = address.rpartition(":")[0].strip("[]")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            socket.getaddrinfo(host, None)
            return
        except socket.gaierror as error:
            if time.monotonic() >= deadline:
                raise UsageError(
                    f"this process's address {host!r} did not resolve within {timeout_s:.0f} s "
                    f"({error}); check -a and the headless Service"
                ) from None
            time.sleep(1.0)


def kafka_topics(config: Config) -> dict[str, str]:
    """The job's Kafka topics by role (input, output, dead letters, quality records), in that
    order."""
    endpoints = {
        "input": config.input,
        "output": config.output,
        "dead letters": config.dead_letter,
        "quality records": config.quality.output,
    }
    return {
        role: endpoint.topic
        for role, endpoint in endpoints.items()
        if isinstance(endpoint, KafkaInput | KafkaTopic)
    }


def missing_topics_message(config: Config, missing: dict[str, str]) -> str:
    """One line naming the missing topics and the commands that create them.

    >>> print(missing_topics_message(Config(), {"input": "streamrec.events"}))
    Kafka at localhost:9092 has no topic streamrec.events (input); create it with \
kafka-topics.sh --bootstrap-server localhost:9092 --create --topic NAME (the local broker: \
python3 deploy/kafka/local_kafka.py topic NAME), or set kafka.create_topics: true
    """
    brokers = ",".join(config.kafka.brokers)
    names = ", ".join(f"{topic} ({role})" for role, topic in missing.items())
    plural = "s" if len(missing) > 1 else ""
    return (
        f"Kafka at {brokers} has no topic{plural} {names}; create {'them' if plural else 'it'} "
        f"with kafka-topics.sh --bootstrap-server {brokers} --create --topic NAME (the local "
        "broker: python3 deploy/kafka/local_kafka.py topic NAME), or set kafka.create_topics: true"
    )


def ensure_topics(config: Config, timeout_s: float = KAFKA_WAIT_S) -> list[str]:
    """Check that the job's topics exist; create the missing ones when the config allows it
    (the output topic compacted, so it keeps the newest list per user). Returns those created.

    Bytewax would otherwise fail inside the dataflow with a long panic."""
    topics = kafka_topics(config)
    if not topics:
        return []
    brokers = ",".join(config.kafka.brokers)
    # log_level 0: an unreachable broker is this one line, not librdkafka's retry log.
    settings = {"bootstrap.servers": brokers, "log_level": 0, **config.kafka.client_config()}
    admin = AdminClient(settings)
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as error:
        raise UsageError(
            f"cannot reach Kafka at {brokers} ({error.args[0].str()}); start it (the local "
            "broker: python3 deploy/kafka/local_kafka.py start) or set kafka.brokers "
            "or $STREAMREC_KAFKA_BROKERS"
        ) from None
    missing = {role: topic for role, topic in topics.items() if topic not in existing}
    if not missing:
        return []
    if not config.kafka.create_topics:
        raise UsageError(missing_topics_message(config, missing))
    # replication_factor -1: the broker's default.replication.factor.
    new = [
        NewTopic(
            topic,
            config.kafka.topic_partitions,
            -1,
            config={"cleanup.policy": "compact" if role == "output" else "delete"},
        )
        for role, topic in missing.items()
    ]
    for topic, future in admin.create_topics(new, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
        except KafkaException as error:
            raise UsageError(f"cannot create Kafka topic {topic}: {error.args[0].str()}") from None
    _wait_until_served(admin, list(missing.values()), config.kafka.topic_partitions, timeout_s)
    return list(missing.values())


def _wait_until_served(
    admin: AdminClient, topics: list[str], partitions: int, timeout_s: float
) -> None:
    """Block until every partition of ``topics`` has a leader (Bytewax lists them at start)."""
    deadline = time.monotonic() + timeout_s
    while True:
        metadata = admin.list_topics(timeout=timeout_s).topics
        served = [
            topic in metadata
            and metadata[topic].error is None
            and len(metadata[topic].partitions) == partitions
            and all(part.leader >= 0 for part in metadata[topic].partitions.values())
            for topic in topics
        ]
        if all(served):
            return
        if time.monotonic() >= deadline:
            raise UsageError(f"created topics {', '.join(topics)} have no leader yet; start again")
        time.sleep(0.2)


def plan(args: argparse.Namespace, environ: dict[str, str]) -> Launch:
    """Check the options and config and work out the Bytewax command line (no side effects)."""
    from dataflows.recommend import CONFIG_ENV, DEFAULT_CONFIG, WARM_START_ENV, WORKERS_ENV

    # The flow reads the same file (DEFAULT_CONFIG is relative to the working directory).
    config_path = Path(args.config or DEFAULT_CONFIG).resolve()
    config = load_config_or_stop(config_path)
    if args.workers_per_process < 1:
        raise UsageError(f"-w must be at least 1, got {args.workers_per_process}")
    cluster = resolve_cluster(args.process_id, args.addresses, args.processes)

    argv = [sys.executable, "-m", "bytewax.run", FLOW, "-w", str(args.workers_per_process)]
    if cluster is not None:
        argv += ["-i", str(cluster.process_id), "-a", ";".join(cluster.addresses)]

    recovery = None
    if not args.no_recovery:
        base = Path(args.recovery_dir or config.recovery.dir or DEFAULT_RECOVERY_DIR)
        # Several processes on one host must not share a directory: each one initializes and
        # owns its share of the partitions, as each pod does on its own volume.
        directory = base / f"process-{cluster.process_id}" if cluster else base
        recovery = Recovery(
            base.resolve(),
            directory.resolve(),
            PARTITIONS,
            config.recovery.snapshot_interval_s,
            config.recovery.backup_interval_s,
        )
        argv += [
            "-r",
            str(recovery.directory),
            "-s",
            str(recovery.snapshot_interval_s),
            "-b",
            str(recovery.backup_interval_s),
        ]
    else:
        argv += ["-s", str(config.recovery.snapshot_interval_s)]

    env = dict(environ)
    env[CONFIG_ENV] = str(config_path)
    env[WORKERS_ENV] = str(args.workers_per_process * (cluster.processes if cluster else 1))
    env.pop(WARM_START_ENV, None)
    if args.warm_start:
        from operators.warm_start import WarmStart, WarmStartError

        warm = Path(args.warm_start).resolve()
        try:
            WarmStart.for_config(warm, config.engine)
        except WarmStartError as error:
            raise UsageError(str(error)) from None
        env[WARM_START_ENV] = str(warm)
    env["PYTHONUNBUFFERED"] = "1"
    env[LEVEL_ENV] = args.log_level
    env[FORMAT_ENV] = args.log_format
    if args.metrics_port:
        env["BYTEWAX_DATAFLOW_API_ENABLED"] = "true"
        env["BYTEWAX_DATAFLOW_API_PORT"] = str(args.metrics_port)
        # The API server writes dataflow.json there before the flow starts and fails the start
        # if it cannot (default: the working directory, read-only in a hardened container).
        env.setdefault("BYTEWAX_DATAFLOW_API_CACHE_PATH", tempfile.gettempdir())
    else:
        env.pop("BYTEWAX_DATAFLOW_API_ENABLED", None)
    # bytewax.run reads these as defaults for its own options; the command line above is the
    # whole truth, so stale values from the environment must not leak in.
    for name in (
        "BYTEWAX_RECOVERY_DIRECTORY",
        "BYTEWAX_SNAPSHOT_INTERVAL",
        "BYTEWAX_RECOVERY_BACKUP_INTERVAL",
        "BYTEWAX_WORKERS_PER_PROCESS",
        "BYTEWAX_PROCESS_ID",
        "BYTEWAX_ADDRESSES",
        # bytewax.run's own StatefulSet convention, which would derive -i/-a behind our back.
        "BYTEWAX_POD_NAME",
        "BYTEWAX_STATEFULSET_NAME",
        "BYTEWAX_HOSTFILE_PATH",
    ):
        env.pop(name, None)
    return Launch(argv, env, recovery, cluster, config)


def main(args: argparse.Namespace) -> int:
    configure(args.log_level, args.log_format)
    launch = plan(args, dict(os.environ))
    if args.metrics_port:
        check_port_free(args.metrics_port)
    if launch.recovery is not None:
        check_layout(launch.recovery.base, launch.cluster)
        created = ensure_partitions(
            launch.recovery.directory, launch.recovery.partitions, launch.cluster
        )
        if created:
            _log(
                f"created recovery partitions {created} of {launch.recovery.partitions} "
                f"in {launch.recovery.directory}"
            )
        scrub_store(launch.recovery.directory)
    created_topics = ensure_topics(launch.config)
    if created_topics:
        _log(f"created Kafka topics {', '.join(created_topics)}")
    if launch.cluster is not None:
        wait_for_address(launch.cluster.addresses[launch.cluster.process_id], DNS_WAIT_S)
    if args.metrics_port:
        _log(f"metrics at http://0.0.0.0:{args.metrics_port}/metrics")
    code = supervise(launch)
    if launch.recovery is not None:
        scrub_store(launch.recovery.directory)
    return code


def _log(line: str) -> None:
    logging.getLogger(LOGGER).info(line)


def _die_with_launcher() -> None:
    """In the child: get SIGKILL when the launcher dies, however it dies (Linux)."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def supervise(launch: Launch) -> int:
    """Run the dataflow as a child; SIGINT or SIGTERM stop it and end with exit 0."""
    child = subprocess.Popen(
        launch.argv,
        env=launch.env,
        stdin=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        # Ctrl-C reaches the launcher alone, which passes it on exactly once.
        start_new_session=True,
        preexec_fn=_die_with_launcher if sys.platform == "linux" else None,
    )
    stop_signal: list[str] = []

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        if not stop_signal:
            stop_signal.append(signal.Signals(signum).name)
            child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    held: list[str] = []
    log_format = launch.env[FORMAT_ENV]
    assert child.stderr is not None
    for raw in child.stderr:
        line = child_line(raw.decode(errors="replace"), log_format)
        if stop_signal:
            held.append(line)
        else:
            sys.stderr.write(line)
            sys.stderr.flush()
    code = child.wait()
    if stop_signal and (code == 0 or any(m in line for line in held for m in _SIGNAL_STOP_MARKS)):
        resume = (
            f"the next start resumes from the last snapshot in {launch.recovery.directory}"
            if launch.recovery is not None
            else "no recovery: the next start reads from input.kafka.starting_offset"
        )
        _log(f"stopped on {stop_signal[0]}; {resume}")
        return 0
    sys.stderr.writelines(held)
    return code
