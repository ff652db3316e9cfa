"""The prod overlay's own command line runs a two-process cluster against the local Kafka.

The StatefulSet's container (the image's entry point, its args, its env) is taken from the
rendered prod overlay and run as pods 0 and 1 would run it, with what a node provides swapped for
local equivalents: the volumes' mount paths become directories of the test (one recovery volume
per pod), the pods' DNS names become 127.0.0.1 with a free cluster and metrics port each (two
processes share this host), the ``$(VAR)`` references are expanded as the kubelet does, and the
Kafka Secret holds the local broker's address. Nothing else is changed. Process 1 is then killed
and both are restarted, as the kubelet restarts containers: every event still gets its list.
"""

from __future__ import annotations

import json
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml
from confluent_kafka.admin import AdminClient, NewTopic
from k8s_render import ROOT, only, render
from kafka_job import GroupReader, committed_epoch, free_ports, produce, stop, tail

USERS = 40
TIMEOUT_S = 180.0


def _entry_point() -> list[str]:
    """The image's ENTRYPOINT, as the local virtual environment provides it."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    (entry,) = re.findall(r"^ENTRYPOINT (\[.*\])$", dockerfile, re.MULTILINE)
    (program, *rest) = json.loads(entry)
    local = Path(sys.executable).parent / program
    assert local.is_file(), f"{program} is not installed beside {sys.executable}"
    return [str(local), *rest]


class Pod:
    """One pod of the rendered StatefulSet, run as a local process."""

    def __init__(
        self, ordinal: int, root: Path, addresses: list[str], secret: dict[str, str]
    ) -> None:
        documents = render("prod")
        statefulset = only(documents, "StatefulSet")
        spec = statefulset["spec"]["template"]["spec"]
        (self.container,) = spec["containers"]
        self.log = root / f"pod-{ordinal}.log"
        self.recovery = root / f"pod-{ordinal}" / "recovery"
        self.metrics_port = free_ports(1)[0]
        self.addresses = addresses
        self.ordinal = ordinal
        self.job: subprocess.Popen[bytes] | None = None
        # Each volume's mount path -> a local directory (the ConfigMap's files written into it).
        self.mounts: dict[str, Path] = {}
        for mount in self.container["volumeMounts"]:
            local = root / f"pod-{ordinal}" / mount["name"]
            local.mkdir(parents=True, exist_ok=True)
            self.mounts[mount["mountPath"]] = local
            (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]] or [{}]
            if "configMap" in volume:
                config_map = only(documents, "ConfigMap")
                assert volume["configMap"]["name"] == config_map["metadata"]["name"]
                for name, text in config_map["data"].items():
                    (local / name).write_text(text, encoding="utf-8")
        assert self.mounts[next(m for m in self.mounts if "recovery" in m)] == self.recovery
        fields = {
            "metadata.name": f"{statefulset['metadata']['name']}-{ordinal}",
            "metadata.namespace": statefulset["metadata"]["namespace"],
        }
        self.env = {
            item["name"]: self._local(item["value"])
            if "value" in item
            else fields[item["valueFrom"]["fieldRef"]["fieldPath"]]
            for item in self.container["env"]
            # An optional Secret that is not there (the pseudonymisation key) sets nothing.
            if "secretKeyRef" not in item.get("valueFrom", {})
        }
        assert [source["secretRef"]["name"] for source in self.container["envFrom"]]
        self.env.update(secret)

    def _local(self, value: str) -> str:
        for mount_path, local in self.mounts.items():
            if value == mount_path or value.startswith(mount_path + "/"):
                return str(local) + value[len(mount_path) :]
        return value

    def argv(self) -> list[str]:
        args = [
            re.sub(r"\$\((\w+)\)", lambda match: self.env[match.group(1)], arg)
            for arg in self.container["args"]
        ]
        # Pod DNS names and the fixed ports become this host's: one port each per process.
        args[args.index("-a") + 1] = ";".join(self.addresses)
        args[args.index("--metrics-port") + 1] = str(self.metrics_port)
        return _entry_point() + [self._local(arg) for arg in args]

    def start(self) -> None:
        with self.log.open("ab") as sink:
            self.job = subprocess.Popen(
                self.argv(),
                env={"PATH": "/usr/bin:/bin", **self.env},
                cwd=self.mounts[next(iter(self.mounts))],
                stdout=sink,
                stderr=subprocess.STDOUT,
            )

    def ready(self) -> bool:
        """The readiness probe, as the kubelet runs it."""
        probe = self.container["readinessProbe"]["httpGet"]
        assert probe["port"] == "metrics"
        url = f"http://127.0.0.1:{self.metrics_port}{probe['path']}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False


def _logs(pods: list[Pod]) -> str:
    return "\n".join(f"--- {pod.log.name}\n{tail(pod.log)}" for pod in pods)


def _wait(condition: Callable[[], bool], what: str, pods: list[Pod]) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {TIMEOUT_S:.0f} s\n{_logs(pods)}")
        time.sleep(0.2)


def _events(start: int, count: int, rng: random.Random) -> list[bytes]:
    """Events of USERS users, one minute apart in event time (so each is its own window)."""
    events = []
    for index in range(start, start + count):
        user = rng.randrange(USERS)
        record = {
            "user_id": f"u{user}",
            "item_id": f"i{(user * 5 + rng.randrange(8)) % 60}",
            "ts": 1_700_000_000_000 + index * 60_000,
            "type": rng.choice(["view", "click", "cart", "purchase"]),
            "event_id": f"e{index}",
        }
        events.append(orjson.dumps(record))
    return events


def _create_topics(bootstrap: str, topics: list[dict[str, Any]]) -> None:
    """The KafkaTopics of the overlay, on the local broker (one replica: it is one broker)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic(t["spec"]["topicName"], num_partitions=t["spec"]["partitions"]) for t in topics]
    for future in admin.create_topics(new).values():
        future.result(timeout=30)


def test_the_prod_statefulsets_command_runs_a_cluster_that_survives_losing_a_pod(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    documents = render("prod")
    assert only(documents, "StatefulSet")["spec"]["replicas"] == 2
    config = yaml.safe_load(only(documents, "ConfigMap")["data"]["config.yaml"])
    topics = [d for d in documents if d["kind"] == "KafkaTopic"]
    _create_topics(kafka_bootstrap, topics)
    events_topic = config.get("input", {}).get("kafka", {}).get("topic", "streamrec.events")
    out_topic = config.get("output", {}).get("kafka", {}).get("topic", "streamrec.recommendations")
    assert {events_topic, out_topic} <= {t["spec"]["topicName"] for t in topics}

    secret = {
        "STREAMREC_KAFKA_BROKERS": kafka_bootstrap,
        "STREAMREC_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
    }
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    pods = [Pod(ordinal, tmp_path, addresses, secret) for ordinal in range(2)]
    rng = random.Random(7)
    stream = _events(0, 1500, rng)
    before_kill = len(stream)
    produce(kafka_bootstrap, events_topic, stream)
    reader = GroupReader(kafka_bootstrap, out_topic)
    try:
        for pod in pods:
            pod.start()
        _wait(lambda: all(pod.ready() for pod in pods), "both pods ready", pods)
        reader.read_until(lambda records: len(records) >= 500, TIMEOUT_S, "lists from the cluster")
        stores = [pod.recovery / f"process-{pod.ordinal}" for pod in pods]
        _wait(lambda: min(map(committed_epoch, stores)) >= 1, "a snapshot on both volumes", pods)
        created = {
            pod.ordinal: sorted(p.name for p in stores[pod.ordinal].glob("part-*.sqlite3"))
            for pod in pods
        }

        # Pod 1 is lost. Pod 0's process cannot go on without it and exits; the kubelet would
        # restart both containers.
        assert pods[1].job is not None and pods[0].job is not None
        pods[1].job.send_signal(signal.SIGKILL)
        assert pods[1].job.wait(30) == -signal.SIGKILL
        code = pods[0].job.wait(TIMEOUT_S)
        assert code != 0, f"pod 0 exited cleanly without its peer:\n{tail(pods[0].log)}"

        # Events keep arriving while the cluster is down.
        later = _events(len(stream), 1000, rng)
        produce(kafka_bootstrap, events_topic, later)
        stream += later
        for pod in pods:
            pod.log.write_text(pod.log.read_text() + "\n--- restart ---\n")
            pod.start()
        _wait(lambda: all(pod.ready() for pod in pods), "both pods ready again", pods)
        # One more event per user closes each user's last window, so every event above has a list.
        closing = [
            orjson.dumps(
                {"user_id": f"u{user}", "item_id": "i0", "ts": 1_800_000_000_000, "type": "view"}
            )
            for user in range(USERS)
        ]
        produce(kafka_bootstrap, events_topic, closing)

        per_user = Counter(orjson.loads(value)["user_id"] for value in stream)
        expected = {(user, version) for user, n in per_user.items() for version in range(1, n + 1)}

        def keys() -> set[tuple[str, int]]:
            return {(r.json()["user_id"], r.json()["version"]) for r in reader.records if r.value}

        try:
            reader.read_until(lambda _records: expected <= keys(), TIMEOUT_S, "every event's list")
        except AssertionError as error:
            # It has timed out twice in about ten full runs of the suite, never alone: say which
            # lists are missing and what the pods logged.
            missing = sorted(expected - keys())
            raise AssertionError(
                f"{error}: {len(missing)} of {len(expected)} lists missing, e.g. {missing[:5]}, "
                f"{len(reader.records)} records read\n{_logs(pods)}"
            ) from None
    finally:
        for pod in pods:
            if pod.job is not None:
                stop(pod.job)
        reader.close()

    first: dict[tuple[str, int], bytes] = {}
    for record in reader.records:
        assert record.value is not None
        value = record.json()
        key = (value["user_id"], value["version"])
        assert first.setdefault(key, record.value) == record.value, f"{key} differs when repeated"
    print(
        f"\nk8s prod command, 2 processes: {len(stream)} events, {len(reader.records)} lists, "
        f"{len(reader.records) - len(first)} repeated after the restart, "
        f"{len(expected - first.keys())} events lost"
    )
    assert first.keys() >= expected
    # The store was created once, and the restart resumed from each volume's partitions instead
    # of reading the topic from the start again.
    assert len(reader.records) - len(first) < before_kill
    for pod in pods:
        log = pod.log.read_text()
        first_start, restart = log.split("--- restart ---")
        assert "created recovery partitions" in first_start
        assert "created recovery partitions" not in restart
        assert (
            sorted(p.name for p in (pod.recovery / f"process-{pod.ordinal}").glob("part-*.sqlite3"))
            == created[pod.ordinal]
        )
    assert created == {
        ordinal: sorted(f"part-{index}.sqlite3" for index in range(ordinal, 12, 2))
        for ordinal in (0, 1)
    }
