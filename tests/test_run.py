"""``streamrec run``: option checks, the Bytewax command line, the recovery store, and against
the local Kafka: the topics, the ready line, the metrics and a clean Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import orjson
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource
from kafka_job import (
    event,
    free_ports,
    produce,
    start_job,
    stop,
    tail,
    wait_exit,
    write_config,
    write_file_config,
)

from dataflows import cli, run
from dataflows.errors import UsageError
from operators.config import Config, config_from_mapping

ROOT = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000_000
#: Longest wait for the live job to say ready or to count what it was sent.
WAIT_S = 120.0
# What the installed ``streamrec`` console script does.
_ENTRY_POINT = "import sys; from dataflows.cli import main; sys.exit(main(sys.argv[1:]))"


def _args(*argv: str):
    return cli.build_parser().parse_args(["run", *argv])


def _config(tmp_path: Path, text: str = "recovery:\n  snapshot_interval_s: 3\n") -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("3", 3), ("streamrec-12", 12)])
def test_process_id_is_a_number_or_a_pod_name(value: str, expected: int) -> None:
    assert run.process_index(value) == expected


def test_a_process_id_without_an_ordinal_is_refused() -> None:
    with pytest.raises(UsageError, match="neither a process number nor a pod name"):
        run.process_index("streamrec")


def test_addresses_as_list_file_or_template(tmp_path: Path) -> None:
    listed = ["a:1", "b:2"]
    assert run.parse_addresses("a:1;b:2", None) == listed
    hostfile = tmp_path / "hosts"
    hostfile.write_text("a:1\n\nb:2\n", encoding="utf-8")
    assert run.parse_addresses(str(hostfile), 2) == listed
    assert run.parse_addresses("h{i}:7", 3) == ["h0:7", "h1:7", "h2:7"]


@pytest.mark.parametrize(
    ("process_id", "addresses", "processes", "message"),
    [
        ("0", None, None, "-i and -a go together"),
        (None, "a:1", None, "-i and -a go together"),
        ("2", "a:1;b:2", None, "process id 2 is not below the 2 addresses"),
        ("0", "a:1;b", None, "'b' is not host:port"),
        ("0", "h{i}:7", None, "needs --processes"),
        ("0", "a:1;b:2", 3, "--processes 3 but -a lists 2 addresses"),
        (None, None, 2, "--processes needs -i and -a"),
    ],
)
def test_inconsistent_cluster_options_are_refused(
    process_id: str | None, addresses: str | None, processes: int | None, message: str
) -> None:
    with pytest.raises(UsageError, match=message):
        run.resolve_cluster(process_id, addresses, processes)


def test_plan_runs_the_flow_with_recovery_and_the_config_in_the_environment(
    tmp_path: Path,
) -> None:
    config = _config(tmp_path)
    stale = {
        "BYTEWAX_PROCESS_ID": "7",
        "BYTEWAX_RECOVERY_DIRECTORY": "/elsewhere",
        "BYTEWAX_POD_NAME": "streamrec-1",
        "KEEP": "1",
    }
    launch = run.plan(
        _args("-c", str(config), "-w", "3", "--recovery-dir", str(tmp_path / "rec")), stale
    )
    assert launch.argv[1:] == [
        "-m",
        "bytewax.run",
        "dataflows.recommend:flow",
        "-w",
        "3",
        "-r",
        str(tmp_path / "rec"),
        "-s",
        "3",
        "-b",
        "0",
    ]
    assert launch.env["STREAMREC_CONFIG"] == str(config)
    assert launch.env["BYTEWAX_DATAFLOW_API_ENABLED"]
    assert launch.env["BYTEWAX_DATAFLOW_API_PORT"] == "3030"
    assert launch.env["BYTEWAX_DATAFLOW_API_CACHE_PATH"] == tempfile.gettempdir()
    assert launch.env["KEEP"] == "1"
    assert "BYTEWAX_PROCESS_ID" not in launch.env
    assert "BYTEWAX_RECOVERY_DIRECTORY" not in launch.env
    assert "BYTEWAX_POD_NAME" not in launch.env


def test_each_process_of_a_cluster_gets_its_own_recovery_directory(tmp_path: Path) -> None:
    config = _config(tmp_path, f"recovery:\n  dir: {tmp_path / 'rec'}\n")
    argv = ("-c", str(config), "-i", "1", "-a", "127.0.0.1:2101;127.0.0.1:2102")
    launch = run.plan(_args(*argv, "--metrics-port", "0"), {})
    assert launch.recovery is not None
    assert launch.recovery.directory == tmp_path / "rec" / "process-1"
    assert launch.argv[launch.argv.index("-i") + 1] == "1"
    assert launch.argv[launch.argv.index("-a") + 1] == "127.0.0.1:2101;127.0.0.1:2102"
    assert "BYTEWAX_DATAFLOW_API_ENABLED" not in launch.env


def test_recovery_is_on_by_default_and_off_only_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    config = _config(tmp_path, "{}\n")
    launch = run.plan(_args("-c", str(config)), {})
    assert launch.recovery is not None
    assert launch.recovery.directory == tmp_path / run.DEFAULT_RECOVERY_DIR
    launch = run.plan(_args("-c", str(config), "--no-recovery"), {})
    assert launch.recovery is None
    assert "-r" not in launch.argv
    assert launch.argv[-2:] == ["-s", "10"]


def test_without_c_the_job_and_the_launcher_read_the_same_default_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UsageError, match="cannot read the config file"):
        run.plan(_args(), {})
    (tmp_path / "deploy").mkdir()
    _config(tmp_path / "deploy")
    launch = run.plan(_args(), {})
    assert launch.env["STREAMREC_CONFIG"] == str(tmp_path / "deploy" / "config.yaml")


def test_a_bad_config_is_one_readable_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read the config file"):
        run.plan(_args("-c", str(tmp_path / "missing.yaml")), {})
    with pytest.raises(UsageError, match=r'unknown key "recovery\.partitions"'):
        run.plan(_args("-c", str(_config(tmp_path, "recovery:\n  partitions: 4\n"))), {})


def _cli(*argv: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``streamrec ARGV`` as a separate process, its output captured."""
    return subprocess.run(
        [sys.executable, "-c", _ENTRY_POINT, *argv],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_command_line_reports_errors_without_a_traceback(tmp_path: Path) -> None:
    result = _cli("run", "-c", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("streamrec run: ")


def test_partitions_are_created_once_each_process_taking_its_share(tmp_path: Path) -> None:
    cluster = run.Cluster(1, ["a:1", "b:2", "c:3"])
    created = run.ensure_partitions(tmp_path / "p1", run.PARTITIONS, cluster)
    assert created == [1, 4, 7, 10]
    assert run.stored_partitions(tmp_path / "p1") == {index: 12 for index in created}
    assert sorted(path.name for path in (tmp_path / "p1").iterdir()) == sorted(
        f"part-{index}.sqlite3" for index in created
    )
    assert run.ensure_partitions(tmp_path / "p1", run.PARTITIONS, cluster) == []
    assert run.ensure_partitions(tmp_path / "single", run.PARTITIONS, None) == list(range(12))


def test_a_store_with_another_partition_count_is_refused(tmp_path: Path) -> None:
    run.ensure_partitions(tmp_path, 4, None)
    with pytest.raises(UsageError, match=r"has \[4\] partitions, this version creates 12"):
        run.ensure_partitions(tmp_path, run.PARTITIONS, None)


def test_a_single_process_store_is_not_silently_replaced_by_a_cluster_one(
    tmp_path: Path,
) -> None:
    cluster = run.Cluster(0, ["a:1", "b:2"])
    run.ensure_partitions(tmp_path, run.PARTITIONS, None)
    with pytest.raises(UsageError, match="holds a single-process recovery store"):
        run.check_layout(tmp_path, cluster)
    other = tmp_path / "cluster"
    run.ensure_partitions(other / "process-0", run.PARTITIONS, cluster)
    run.check_layout(other, cluster)
    with pytest.raises(UsageError, match=r"holds a cluster's recovery store \(process-0\)"):
        run.check_layout(other, None)


def test_a_taken_metrics_port_is_reported_before_bytewax_starts() -> None:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as holder:
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(UsageError, match=f"metrics port {port} is not free"):
            run.check_port_free(port)


def test_an_unresolvable_own_address_is_reported() -> None:
    with pytest.raises(UsageError, match="did not resolve"):
        run.wait_for_address("no-such-host.invalid:2101", timeout_s=0)


def _kafka_config(bootstrap: str, prefix: str, **kafka: object) -> Config:
    return config_from_mapping(
        {
            "kafka": {"brokers": [bootstrap], **kafka},
            "input": {"kafka": {"topic": f"{prefix}.events"}},
            "output": {"kafka": {"topic": f"{prefix}.recs"}},
            "dead_letter": {"kafka": {"topic": f"{prefix}.dead"}},
        }
    )


def test_missing_topics_are_named_in_one_line_or_created_when_allowed(
    kafka_bootstrap: str,
) -> None:
    prefix = f"missing-{uuid.uuid4().hex[:8]}"
    with pytest.raises(UsageError) as refused:
        run.ensure_topics(_kafka_config(kafka_bootstrap, prefix))
    message = str(refused.value)
    assert "\n" not in message
    for topic in (f"{prefix}.events (input)", f"{prefix}.recs (output)", f"{prefix}.dead"):
        assert topic in message
    assert "kafka-topics.sh" in message
    assert "kafka.create_topics: true" in message

    config = _kafka_config(kafka_bootstrap, prefix, create_topics=True, topic_partitions=2)
    created = run.ensure_topics(config)
    assert created == [f"{prefix}.events", f"{prefix}.recs", f"{prefix}.dead"]
    assert run.ensure_topics(config) == [], "existing topics are left alone"
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    topics = admin.list_topics(timeout=10).topics
    assert all(len(topics[topic].partitions) == 2 for topic in created)
    resources = [ConfigResource(ConfigResource.Type.TOPIC, topic) for topic in created]
    policies = {
        resource.name: future.result(timeout=10)["cleanup.policy"].value
        for resource, future in admin.describe_configs(resources).items()
    }
    assert policies == {
        f"{prefix}.events": "delete",
        f"{prefix}.recs": "compact",
        f"{prefix}.dead": "delete",
    }


def test_an_unreachable_broker_is_one_line() -> None:
    (port,) = free_ports(1)
    with pytest.raises(UsageError, match=rf"^cannot reach Kafka at 127.0.0.1:{port} \("):
        run.ensure_topics(_kafka_config(f"127.0.0.1:{port}", "nowhere"), timeout_s=1)


def test_the_live_job_says_ready_exports_its_metrics_commits_offsets_and_stops_on_ctrl_c(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    prefix = f"live-{uuid.uuid4().hex[:8]}"
    config = write_config(
        tmp_path / "config.yaml",
        kafka_bootstrap,
        f"{prefix}.events",
        f"{prefix}.recs",
        f"{prefix}.dead",
        tail=True,
        overrides={"kafka": {"create_topics": True, "topic_partitions": 1}},
    )
    log = tmp_path / "job.log"
    (port,) = free_ports(1)
    job = start_job(
        config, log, "--recovery-dir", str(tmp_path / "rec"), "--metrics-port", str(port)
    )
    try:
        _wait(lambda: "streamrec run: ready: reading topic" in log.read_text(), job, log, "ready")
        alice = [event("alice", "lamp", T0), event("alice", "shade", T0 + 60_000)]
        produce(kafka_bootstrap, f"{prefix}.events", [*alice, b"not json"])
        # Alice's second event closes her first window (one list) and is a target against it.
        wanted = {
            "streamrec_events_in_total": 3.0,
            'streamrec_events_total{outcome="processed"}': 2.0,
            'streamrec_events_total{outcome="dead_lettered"}': 1.0,
            'streamrec_dead_letters_total{reason="unparseable"}': 1.0,
            'streamrec_dead_letters_total{reason="late"}': 0.0,
            "streamrec_late_events_total": 0.0,
            "streamrec_lists_out_total": 1.0,
            "streamrec_tombstones_total": 0.0,
            "streamrec_events_pending": 0.0,
            "streamrec_users": 1.0,
            "streamrec_items": 2.0,
            'streamrec_online_targets_total{model="streamrec"}': 1.0,
            "streamrec_model_update_seconds_count": 2.0,
            "streamrec_ranking_seconds_count": 1.0,
            "streamrec_event_to_list_seconds_count": 1.0,
        }
        _wait(lambda: _scrape(port, wanted) == wanted, job, log, f"the metrics {wanted}")
        (hit_rate,) = _scrape(port, {'streamrec_online_hit_rate{model="streamrec"}': 0}).values()
        assert hit_rate in (0.0, 1.0), "one target: a hit or a miss"

        # The counters move: a third event (a list, a target), one too late, a forgotten user.
        later = [
            event("alice", "bulb", T0 + 120_000),
            event("alice", "old", T0 - 7_200_000),
            orjson.dumps({"user_id": "alice", "ts": T0 + 180_000, "type": "forget_user"}),
        ]
        produce(kafka_bootstrap, f"{prefix}.events", later)
        wanted |= {
            "streamrec_events_in_total": 6.0,
            'streamrec_events_total{outcome="processed"}': 4.0,
            'streamrec_events_total{outcome="dead_lettered"}': 2.0,
            'streamrec_dead_letters_total{reason="late"}': 1.0,
            "streamrec_lists_out_total": 2.0,
            "streamrec_tombstones_total": 1.0,
            "streamrec_users": 0.0,
            "streamrec_items": 3.0,
            'streamrec_online_targets_total{model="streamrec"}': 2.0,
            "streamrec_model_update_seconds_count": 3.0,
            "streamrec_ranking_seconds_count": 2.0,
            "streamrec_event_to_list_seconds_count": 2.0,
        }
        _wait(lambda: _scrape(port, wanted) == wanted, job, log, f"the metrics {wanted}")
        # Kafka's lag tools see the job: its group committed every offset it read.
        _wait(lambda: _committed(kafka_bootstrap, f"{prefix}.events") == 6, job, log, "commits")
        job.send_signal(signal.SIGINT)
        assert job.wait(timeout=60) == 0, tail(log)
    finally:
        stop(job)
    text = log.read_text()
    assert "panicked" not in text and "Traceback" not in text, text
    assert text.rstrip().splitlines()[-1].startswith("streamrec run: stopped on SIGINT; ")


def _committed(bootstrap: str, topic: str) -> int:
    """The offset the job's consumer group committed on partition 0 of ``topic``."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    request = ConsumerGroupTopicPartitions("streamrec", [TopicPartition(topic, 0)])
    (future,) = admin.list_consumer_group_offsets([request]).values()
    (partition,) = future.result(timeout=10).topic_partitions
    return partition.offset


def _scrape(port: int, names: dict[str, float]) -> dict[str, float]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            lines = response.read().decode().splitlines()
    except OSError:
        return {}
    samples = dict(line.rsplit(" ", 1) for line in lines if line and not line.startswith("#"))
    return {name: float(samples[name]) for name in names if name in samples}


def _wait(done: Callable[[], bool], job: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not done():
        assert job.poll() is None, f"the job ended before {what}:\n{tail(log)}"
        assert time.monotonic() < deadline, f"no {what} in {WAIT_S:.0f} s:\n{tail(log)}"
        time.sleep(0.2)


@pytest.mark.parametrize(("level", "ready"), [("info", True), ("warning", False)])
def test_json_logs_are_one_object_a_line_at_the_level_asked(
    tmp_path: Path, level: str, ready: bool
) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(event("alice", "lamp", T0) + b"\n" + event("alice", "jam", T0 + 1) + b"\n")
    config = write_file_config(
        tmp_path / "config.yaml", events, tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    )
    log = tmp_path / "job.log"
    options = ["--no-recovery", "--metrics-port", "0", "--log-format", "json"]
    wait_exit(start_job(config, log, *options, "--log-level", level), log, WAIT_S)
    records = [orjson.loads(line) for line in log.read_text().splitlines()]
    assert all(set(record) == {"time", "level", "logger", "message"} for record in records)
    readies = [r for r in records if r["message"].startswith("ready: reading file ")]
    assert len(readies) == int(ready), records
    assert all(record["level"] != "info" for record in records) or ready


def test_a_usage_error_in_json_mode_is_one_json_line(tmp_path: Path) -> None:
    result = _cli("run", "--log-format", "json", "-c", "nope.yaml", cwd=tmp_path)
    assert result.returncode == 2
    (line,) = result.stderr.splitlines()
    record = orjson.loads(line)
    assert record["level"] == "error"
    assert record["message"].startswith("streamrec run: ")
    assert "nope.yaml: cannot read the config file" in record["message"]
