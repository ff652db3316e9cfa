"""The Kubernetes manifests agree with each other, the config loader and ``streamrec run``.

Nothing here talks to a cluster: every manifest is parsed, the pod's arguments are expanded the
way the kubelet expands ``$(VAR)`` for each ordinal, and the resulting command line is planned by
the real ``dataflows.run.plan``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from dataflows import cli, run
from operators.config import load_config

ROOT = Path(__file__).resolve().parent.parent
K8S = ROOT / "k8s"
NAMESPACE = "recs-prod"


def _manifests() -> dict[str, dict[str, Any]]:
    documents: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            assert {"apiVersion", "kind", "metadata"} <= document.keys(), path
            assert document["kind"] not in documents, f"two {document['kind']} manifests"
            documents[document["kind"]] = document
    return documents


MANIFESTS = _manifests()
STATEFULSET = MANIFESTS["StatefulSet"]
SERVICE = MANIFESTS["Service"]
POD = STATEFULSET["spec"]["template"]["spec"]
(CONTAINER,) = POD["containers"]


def _port(ports: list[dict[str, Any]], name: str, key: str) -> int:
    (port,) = [port[key] for port in ports if port["name"] == name]
    return int(port)


def _mount(name: str) -> str:
    (path,) = [mount["mountPath"] for mount in CONTAINER["volumeMounts"] if mount["name"] == name]
    return str(path)


def _config_file(tmp_path: Path) -> Path:
    """The ConfigMap's config.yaml, written where the test can load it."""
    path = tmp_path / "config.yaml"
    path.write_text(MANIFESTS["ConfigMap"]["data"]["config.yaml"], encoding="utf-8")
    return path


def _pod_env() -> dict[str, str]:
    """The container's literal environment variables."""
    return {item["name"]: item["value"] for item in CONTAINER["env"] if "value" in item}


def _pod_args(ordinal: int, config_path: Path) -> list[str]:
    """The container's args for pod ``ordinal`` as the kubelet expands them."""
    values = {
        "metadata.name": f"{STATEFULSET['metadata']['name']}-{ordinal}",
        "metadata.namespace": NAMESPACE,
    }
    env = {
        item["name"]: item["value"]
        if "value" in item
        else values[item["valueFrom"]["fieldRef"]["fieldPath"]]
        for item in CONTAINER["env"]
    }
    expanded = [
        re.sub(r"\$\((\w+)\)", lambda match: env[match.group(1)], arg) for arg in CONTAINER["args"]
    ]
    config_index = expanded.index("-c") + 1
    assert Path(expanded[config_index]).parent == Path(_mount("config"))
    expanded[config_index] = str(config_path)
    return expanded


def test_every_manifest_names_the_same_app_and_the_service_selects_the_pods() -> None:
    labels = STATEFULSET["spec"]["template"]["metadata"]["labels"]
    assert STATEFULSET["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert SERVICE["spec"]["selector"].items() <= labels.items()
    for document in MANIFESTS.values():
        assert document["metadata"]["labels"]["app.kubernetes.io/name"] == "streamrec"


def test_the_service_is_headless_and_publishes_pods_before_they_are_ready() -> None:
    assert SERVICE["spec"]["clusterIP"] == "None"
    assert SERVICE["spec"]["publishNotReadyAddresses"] is True
    assert STATEFULSET["spec"]["serviceName"] == SERVICE["metadata"]["name"]
    assert STATEFULSET["spec"]["podManagementPolicy"] == "Parallel"


def test_the_configmap_config_loads_and_keeps_recovery_on_the_per_pod_volume(
    tmp_path: Path,
) -> None:
    config = load_config(_config_file(tmp_path), {})
    assert config.recovery.dir == _mount("recovery")
    (template,) = STATEFULSET["spec"]["volumeClaimTemplates"]
    assert template["metadata"]["name"] == "recovery"
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert config.input.KIND == "kafka"


@pytest.mark.parametrize("ordinal", range(STATEFULSET["spec"]["replicas"]))
def test_each_pod_is_one_process_of_a_cluster_as_large_as_the_replica_count(
    ordinal: int, tmp_path: Path
) -> None:
    replicas = STATEFULSET["spec"]["replicas"]
    args = cli.build_parser().parse_args(_pod_args(ordinal, _config_file(tmp_path)))
    launch = run.plan(args, _pod_env())

    assert launch.cluster is not None
    assert launch.cluster.process_id == ordinal
    assert launch.cluster.processes == replicas
    cluster_port = _port(CONTAINER["ports"], "cluster", "containerPort")
    assert _port(SERVICE["spec"]["ports"], "cluster", "port") == cluster_port
    sts, service = STATEFULSET["metadata"]["name"], SERVICE["metadata"]["name"]
    assert launch.cluster.addresses == [
        f"{sts}-{k}.{service}.{NAMESPACE}.svc.cluster.local:{cluster_port}" for k in range(replicas)
    ]
    argv = launch.argv
    assert argv[argv.index("-i") + 1] == str(ordinal)
    assert argv[argv.index("-a") + 1].split(";") == launch.cluster.addresses
    # Each pod keeps its partitions on its own volume.
    assert launch.recovery is not None
    assert launch.recovery.base == Path(_mount("recovery"))
    assert launch.recovery.directory == Path(_mount("recovery")) / f"process-{ordinal}"
    assert argv[argv.index("-r") + 1] == str(launch.recovery.directory)


def test_metrics_port_agrees_between_the_job_the_pod_the_service_and_prometheus(
    tmp_path: Path,
) -> None:
    args = cli.build_parser().parse_args(_pod_args(0, _config_file(tmp_path)))
    launch = run.plan(args, _pod_env())
    port = int(launch.env["BYTEWAX_DATAFLOW_API_PORT"])
    assert launch.env["BYTEWAX_DATAFLOW_API_ENABLED"]
    assert _port(CONTAINER["ports"], "metrics", "containerPort") == port
    assert _port(SERVICE["spec"]["ports"], "metrics", "port") == port
    annotations = STATEFULSET["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == port
    for probe in ("readinessProbe", "livenessProbe"):
        assert CONTAINER[probe]["httpGet"]["port"] == "metrics"
        assert CONTAINER[probe]["httpGet"]["path"] == annotations["prometheus.io/path"]


def test_kafka_settings_come_from_the_secret_and_override_the_config() -> None:
    secret = MANIFESTS["Secret"]
    (source,) = CONTAINER["envFrom"]
    assert source["secretRef"]["name"] == secret["metadata"]["name"]
    environ = dict(secret["stringData"])
    assert all(name.startswith("STREAMREC_KAFKA_") for name in environ)
    config = load_config(None, environ)
    assert config.kafka.brokers == tuple(environ["STREAMREC_KAFKA_BROKERS"].split(","))


def test_the_image_runs_streamrec_as_the_user_the_pod_expects() -> None:
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["streamrec"]' in dockerfile
    assert "command" not in CONTAINER  # the args go to the image's entrypoint
    assert CONTAINER["args"][0] == "run"
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.MULTILINE)
    assert user is not None
    security = POD["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"]) == (int(user[1]), int(user[2]))
    exposed = re.search(r"^EXPOSE (.+)$", dockerfile, re.MULTILINE)
    assert exposed is not None
    ports = {port["containerPort"] for port in CONTAINER["ports"]}
    assert {int(port) for port in exposed[1].split()} == ports


def test_everything_the_job_writes_lands_on_a_writable_volume(tmp_path: Path) -> None:
    """The root file system is read-only: the recovery store and Bytewax's dataflow.json must
    go to mounted volumes, or the pod cannot start."""
    assert CONTAINER["securityContext"]["readOnlyRootFilesystem"] is True
    writable = {
        mount["mountPath"] for mount in CONTAINER["volumeMounts"] if not mount.get("readOnly")
    }
    args = cli.build_parser().parse_args(_pod_args(0, _config_file(tmp_path)))
    launch = run.plan(args, _pod_env())
    assert launch.recovery is not None
    written = [launch.recovery.directory, Path(launch.env["BYTEWAX_DATAFLOW_API_CACHE_PATH"])]
    for path in written:
        assert any(path.is_relative_to(mount) for mount in writable), path
