"""The Kubernetes manifests: every one parses and validates offline, raw and as kustomize renders
each overlay, and they agree with each other, the config loader and ``streamrec run``.

Nothing here talks to a cluster. Built-in kinds are validated strictly (unknown fields refused)
against the OpenAPI schemas of Kubernetes :data:`KUBERNETES_VERSION` that ship with the pinned
``kubernetes-validate`` package. The CRD kinds (Strimzi's KafkaTopic, prometheus-operator's
PodMonitor) are checked against :data:`CRD_SCHEMAS`, written here from those CRDs for the fields
used: a structural check, not their full schemas, which are not available offline. The pod's
arguments are expanded the way the kubelet expands ``$(VAR)`` and planned by the real
``dataflows.run.plan`` for each ordinal.
"""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from k8s_render import K8S, OVERLAYS, ROOT, only, render

from dataflows import cli, run
from operators.config import load_config
from operators.privacy import USER_KEY_ENV

KUBERNETES_VERSION = "1.34"
NAMESPACES = {"dev": "streamrec-dev", "prod": "streamrec"}
_DURATION = {"type": "string", "pattern": r"^([0-9]+(ms|s|m|h))+$"}
_LABEL_SELECTOR = {
    "type": "object",
    "properties": {"matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}},
    "required": ["matchLabels"],
}
_METADATA = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    "required": ["name"],
}
CRD_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    ("kafka.strimzi.io/v1beta2", "KafkaTopic"): {
        "type": "object",
        "properties": {
            "metadata": {
                **_METADATA,
                "properties": {
                    **_METADATA["properties"],
                    "labels": {
                        "type": "object",
                        "required": ["strimzi.io/cluster"],
                        "additionalProperties": {"type": "string"},
                    },
                },
                "required": ["name", "namespace", "labels"],
            },
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "topicName": {"type": "string", "pattern": r"^[a-zA-Z0-9._-]{1,249}$"},
                    "partitions": {"type": "integer", "minimum": 1},
                    "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                    "config": {
                        "type": "object",
                        "additionalProperties": {"type": ["string", "integer", "boolean"]},
                    },
                },
                "required": ["partitions", "replicas"],
            },
        },
        "required": ["metadata", "spec"],
    },
    ("monitoring.coreos.com/v1", "PodMonitor"): {
        "type": "object",
        "properties": {
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "selector": _LABEL_SELECTOR,
                    "podMetricsEndpoints": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "port": {"type": "string"},
                                "path": {"type": "string", "pattern": "^/"},
                                "interval": _DURATION,
                            },
                            "required": ["port"],
                        },
                    },
                },
                "required": ["selector", "podMetricsEndpoints"],
            },
        },
        "required": ["metadata", "spec"],
    },
}


def validate(document: dict[str, Any]) -> None:
    """Raise if ``document`` is not a valid object of its kind."""
    crd = CRD_SCHEMAS.get((document["apiVersion"], document["kind"]))
    if crd is not None:
        jsonschema.validate(document, crd)
    else:
        kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)


def _kustomizations() -> list[Path]:
    return sorted(K8S.rglob("kustomization.yaml"))


def _raw_resources() -> list[tuple[Path, dict[str, Any]]]:
    """Every document of every file a kustomization lists under ``resources`` (not a directory)."""
    found = []
    for kustomization in _kustomizations():
        for entry in yaml.safe_load(kustomization.read_text(encoding="utf-8")).get("resources", []):
            path = (kustomization.parent / entry).resolve()
            if path.is_file():
                found += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


RAW = _raw_resources()


@pytest.mark.parametrize(
    ("path", "document"),
    RAW,
    ids=[f"{path.relative_to(K8S)}:{doc['kind']}/{doc['metadata']['name']}" for path, doc in RAW],
)
def test_every_raw_manifest_validates(path: Path, document: dict[str, Any]) -> None:
    validate(document)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_manifest_validates(overlay: str) -> None:
    documents = render(overlay)
    assert documents
    for document in documents:
        validate(document)


def test_the_validators_refuse_what_a_cluster_would_refuse() -> None:
    """Guards the two checks above against passing anything."""
    statefulset = copy.deepcopy(only(render("prod"), "StatefulSet"))
    statefulset["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(statefulset)
    topic = copy.deepcopy(_topics("prod")[0])
    topic["spec"]["partitions"] = "12"
    with pytest.raises(jsonschema.ValidationError):
        validate(topic)


def test_the_kustomizations_and_the_required_kinds_are_there() -> None:
    kinds = {yaml.safe_load(path.read_text())["kind"] for path in _kustomizations()}
    assert kinds == {"Kustomization", "Component"}
    for overlay in OVERLAYS:
        rendered = {document["kind"] for document in render(overlay)}
        required = {"StatefulSet", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy"}
        assert required <= rendered, overlay
    assert {"KafkaTopic", "PodMonitor"} <= {document["kind"] for document in render("prod")}


def test_the_base_config_is_deploy_config_yaml() -> None:
    """A copy: kustomize loads no file outside the kustomization (k8s/base/kustomization.yaml)."""
    copied = (K8S / "base" / "config.yaml").read_bytes()
    assert copied == (ROOT / "deploy" / "config.yaml").read_bytes(), (
        "k8s/base/config.yaml differs from deploy/config.yaml: cp deploy/config.yaml k8s/base/"
    )


def _pod(overlay: str) -> dict[str, Any]:
    return only(render(overlay), "StatefulSet")["spec"]["template"]["spec"]


def _container(overlay: str) -> dict[str, Any]:
    (container,) = _pod(overlay)["containers"]
    return container


def _topics(overlay: str) -> list[dict[str, Any]]:
    return [document for document in render(overlay) if document["kind"] == "KafkaTopic"]


def _mount(overlay: str, name: str) -> Path:
    mounts = _container(overlay)["volumeMounts"]
    (path,) = [mount["mountPath"] for mount in mounts if mount["name"] == name]
    return Path(path)


def _port(ports: list[dict[str, Any]], name: str, key: str) -> int:
    (port,) = [port[key] for port in ports if port["name"] == name]
    return int(port)


def _config_file(overlay: str, tmp_path: Path) -> Path:
    """The rendered ConfigMap's config.yaml, written where the test can load it."""
    path = tmp_path / "config.yaml"
    path.write_text(only(render(overlay), "ConfigMap")["data"]["config.yaml"], encoding="utf-8")
    return path


def _literal_env(overlay: str) -> dict[str, str]:
    return {item["name"]: item["value"] for item in _container(overlay)["env"] if "value" in item}


def _pod_args(overlay: str, ordinal: int, config_path: Path) -> list[str]:
    """The container's args for pod ``ordinal`` as the kubelet expands them."""
    statefulset = only(render(overlay), "StatefulSet")
    values = {
        "metadata.name": f"{statefulset['metadata']['name']}-{ordinal}",
        "metadata.namespace": statefulset["metadata"]["namespace"],
    }
    env = {
        item["name"]: item.get("value") or values[item["valueFrom"]["fieldRef"]["fieldPath"]]
        for item in _container(overlay)["env"]
        if "secretKeyRef" not in item.get("valueFrom", {})
    }
    expanded = [
        re.sub(r"\$\((\w+)\)", lambda match: env[match.group(1)], arg)
        for arg in _container(overlay)["args"]
    ]
    config_index = expanded.index("-c") + 1
    assert Path(expanded[config_index]).parent == _mount(overlay, "config")
    expanded[config_index] = str(config_path)
    return expanded


def _plan(overlay: str, ordinal: int, tmp_path: Path) -> run.Launch:
    args = cli.build_parser().parse_args(
        _pod_args(overlay, ordinal, _config_file(overlay, tmp_path))
    )
    return run.plan(args, _literal_env(overlay))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_pick_the_pods_and_the_service_is_headless(overlay: str) -> None:
    documents = render(overlay)
    statefulset, service = only(documents, "StatefulSet"), only(documents, "Service")
    labels = statefulset["spec"]["template"]["metadata"]["labels"]
    selectors = [
        statefulset["spec"]["selector"]["matchLabels"],
        service["spec"]["selector"],
        only(documents, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        only(documents, "NetworkPolicy")["spec"]["podSelector"]["matchLabels"],
    ]
    selectors += [
        d["spec"]["selector"]["matchLabels"] for d in documents if d["kind"] == "PodMonitor"
    ]
    for selector in selectors:
        assert selector and selector.items() <= labels.items()
    assert service["spec"]["clusterIP"] == "None"
    assert service["spec"]["publishNotReadyAddresses"] is True
    assert statefulset["spec"]["serviceName"] == service["metadata"]["name"]
    assert statefulset["spec"]["podManagementPolicy"] == "Parallel"
    assert only(documents, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    for document in documents:
        if document["kind"] != "KafkaTopic":
            assert document["metadata"]["namespace"] == NAMESPACES[overlay]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_pod_is_non_root_read_only_and_keeps_its_store_on_its_own_claim(
    overlay: str, tmp_path: Path
) -> None:
    statefulset = only(render(overlay), "StatefulSet")
    pod, container = _pod(overlay), _container(overlay)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert statefulset["spec"]["persistentVolumeClaimRetentionPolicy"] == {
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }
    launch = _plan(overlay, 1, tmp_path)
    assert launch.recovery is not None
    assert launch.recovery.base == _mount(overlay, claim["metadata"]["name"])
    # Everything the job writes must land on a writable volume: the root file system is not.
    writable = [Path(m["mountPath"]) for m in container["volumeMounts"] if not m.get("readOnly")]
    for path in (launch.recovery.directory, Path(launch.env["BYTEWAX_DATAFLOW_API_CACHE_PATH"])):
        assert any(path.is_relative_to(mount) for mount in writable), path
    assert "cpu" not in container["resources"]["limits"]
    assert (
        container["resources"]["limits"]["memory"] == container["resources"]["requests"]["memory"]
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_pod_is_one_process_of_a_cluster_as_large_as_the_replica_count(
    overlay: str, tmp_path: Path
) -> None:
    documents = render(overlay)
    statefulset, service = only(documents, "StatefulSet"), only(documents, "Service")
    replicas = statefulset["spec"]["replicas"]
    assert _literal_env(overlay)["STREAMREC_PROCESSES"] == str(replicas)
    cluster_port = _port(_container(overlay)["ports"], "cluster", "containerPort")
    assert _port(service["spec"]["ports"], "cluster", "port") == cluster_port
    sts, svc, namespace = (
        statefulset["metadata"]["name"],
        service["metadata"]["name"],
        NAMESPACES[overlay],
    )
    for ordinal in range(replicas):
        launch = _plan(overlay, ordinal, tmp_path)
        assert launch.cluster is not None
        assert launch.cluster.process_id == ordinal
        assert launch.cluster.addresses == [
            f"{sts}-{k}.{svc}.{namespace}.svc:{cluster_port}" for k in range(replicas)
        ]
        assert launch.recovery is not None
        assert launch.recovery.directory == launch.recovery.base / f"process-{ordinal}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_metrics_port_agrees_between_the_job_the_pod_the_service_the_probes_and_prometheus(
    overlay: str, tmp_path: Path
) -> None:
    documents = render(overlay)
    port = int(_plan(overlay, 0, tmp_path).env["BYTEWAX_DATAFLOW_API_PORT"])
    container = _container(overlay)
    assert _port(container["ports"], "metrics", "containerPort") == port
    assert _port(only(documents, "Service")["spec"]["ports"], "metrics", "port") == port
    annotations = only(documents, "StatefulSet")["spec"]["template"]["metadata"]["annotations"]
    assert int(annotations["prometheus.io/port"]) == port
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {
            "path": annotations["prometheus.io/path"],
            "port": "metrics",
        }
    for monitor in (d for d in documents if d["kind"] == "PodMonitor"):
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert (endpoint["port"], endpoint["path"]) == (
            "metrics",
            annotations["prometheus.io/path"],
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_network_policy_lets_through_only_the_cluster_metrics_dns_and_kafka(
    overlay: str,
) -> None:
    policy = only(render(overlay), "NetworkPolicy")["spec"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    ingress_ports = sorted(port["port"] for rule in policy["ingress"] for port in rule["ports"])
    assert ingress_ports == ["cluster", "metrics"]
    egress = {
        (port["port"], port["protocol"]) for rule in policy["egress"] for port in rule["ports"]
    }
    cluster_port = _port(_container(overlay)["ports"], "cluster", "containerPort")
    kafka = egress - {(53, "UDP"), (53, "TCP"), (cluster_port, "TCP")}
    assert {(53, "UDP"), (53, "TCP"), (cluster_port, "TCP")} <= egress
    assert kafka and all(port in (9092, 9093) for port, _ in kafka)
    assert all(rule.get("ports") for rule in policy["egress"]), "an egress rule without ports"


def test_prod_reaches_kafka_over_tls_with_the_strimzi_ca_and_only_the_brokers(
    tmp_path: Path,
) -> None:
    config = load_config(_config_file("prod", tmp_path), {})
    ca = Path(config.kafka.extra["ssl.ca.location"])
    assert ca.parent == _mount("prod", "kafka-ca")
    (volume,) = [v for v in _pod("prod")["volumes"] if v["name"] == "kafka-ca"]
    assert [item["path"] for item in volume["secret"]["items"]] == [ca.name]
    (kafka_rule,) = [
        rule
        for rule in only(render("prod"), "NetworkPolicy")["spec"]["egress"]
        if any(port["port"] == 9093 for port in rule["ports"])
    ]
    (peer,) = kafka_rule["to"]
    assert peer["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kafka"}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kafka_settings_come_from_a_secret(overlay: str) -> None:
    documents = render(overlay)
    (source,) = _container(overlay)["envFrom"]
    name = source["secretRef"]["name"]
    secrets = {d["metadata"]["name"]: d for d in documents if d["kind"] == "Secret"}
    if overlay == "prod":
        # Created by the operator (k8s/README.md): credentials are never in the repository.
        assert name == "streamrec-kafka" and not secrets
        return
    environ = secrets[name].get("stringData") or {
        key: base64.b64decode(value).decode() for key, value in secrets[name]["data"].items()
    }
    assert all(key.startswith("STREAMREC_KAFKA_") for key in environ)
    config = load_config(None, environ)
    assert config.kafka.brokers == tuple(environ["STREAMREC_KAFKA_BROKERS"].split(","))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_pseudonymisation_key_comes_from_an_optional_secret(overlay: str) -> None:
    (item,) = [e for e in _container(overlay)["env"] if e["name"] == USER_KEY_ENV]
    reference = item["valueFrom"]["secretKeyRef"]
    assert reference == {"name": "streamrec-user-key", "key": USER_KEY_ENV, "optional": True}
    assert not [d for d in render(overlay) if d["metadata"]["name"] == reference["name"]]


def test_the_topics_are_the_configs_and_the_output_is_compacted(tmp_path: Path) -> None:
    config = load_config(_config_file("prod", tmp_path), {})
    topics = {topic["spec"]["topicName"]: topic for topic in _topics("prod")}
    assert set(topics) == {config.input.topic, config.output.topic, config.dead_letter.topic}
    assert topics[config.output.topic]["spec"]["config"]["cleanup.policy"] == "compact"
    assert topics[config.input.topic]["spec"]["config"]["cleanup.policy"] == "delete"
    assert topics[config.dead_letter.topic]["spec"]["config"]["cleanup.policy"] == "delete"
    # Every worker of the cluster can read at least one input partition.
    workers = int(_container("prod")["args"][_container("prod")["args"].index("-w") + 1])
    replicas = only(render("prod"), "StatefulSet")["spec"]["replicas"]
    assert topics[config.input.topic]["spec"]["partitions"] >= replicas * workers
    assert run.PARTITIONS % replicas == 0, "recovery partitions do not split evenly over the pods"
    assert {topic["metadata"]["namespace"] for topic in topics.values()} == {"kafka"}
