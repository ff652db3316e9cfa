"""The local broker helper: configuration, cache, readable failures, clean stop."""

from __future__ import annotations

import socket
from pathlib import Path

import local_kafka
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient


def _properties(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines())


def test_free_port_can_be_bound() -> None:
    port = local_kafka.free_port()
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))


def test_server_properties_describe_one_combined_node_on_loopback() -> None:
    settings = _properties(local_kafka.render_server_properties(7001, 7002, "/tmp/data"))
    assert settings["process.roles"] == "broker,controller"
    assert settings["controller.quorum.voters"] == f"{settings['node.id']}@127.0.0.1:7002"
    assert settings["advertised.listeners"] == "PLAINTEXT://127.0.0.1:7001"
    assert settings["log.dirs"] == "/tmp/data"
    # A single node cannot hold more than one replica of the internal topics.
    assert settings["offsets.topic.replication.factor"] == "1"
    assert settings["transaction.state.log.replication.factor"] == "1"
    assert settings["group.initial.rebalance.delay.ms"] == "0"


def test_cluster_ids_are_kafka_shaped_unique_and_never_look_like_an_option() -> None:
    ids = {local_kafka.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(cluster) == 22 and "=" not in cluster for cluster in ids)
    assert not any(cluster.startswith("-") for cluster in ids)


def test_cache_location_follows_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(local_kafka.CACHE_ENV, str(tmp_path))
    assert local_kafka.libs_dir() == tmp_path / f"kafka-{local_kafka.KAFKA_VERSION}" / "libs"


def test_cached_jars_are_used_without_maven(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    libs = local_kafka.libs_dir(tmp_path)
    libs.mkdir(parents=True)
    monkeypatch.setenv("PATH", "")
    assert local_kafka.ensure_libs(tmp_path) == libs


def test_missing_maven_is_one_readable_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(local_kafka.LocalKafkaError, match="`mvn` is not on PATH"):
        local_kafka.ensure_libs(tmp_path)


@pytest.mark.kafka
def test_a_failed_start_says_why() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(local_kafka.PortInUseError) as failure:
            local_kafka.start(port=port)
    first_line = str(failure.value).splitlines()[0]
    assert f"127.0.0.1:{port}: Address already in use" in first_line


@pytest.mark.kafka
def test_a_halted_broker_resumes_on_its_port_with_its_data_and_stop_removes_it() -> None:
    broker = local_kafka.start()
    try:
        brokers, cluster_id = local_kafka.probe_metadata(broker.broker_port)
        assert (brokers, cluster_id) == (1, broker.cluster_id)
        local_kafka.create_topic(broker.bootstrap, "kept")
        producer = Producer({"bootstrap.servers": broker.bootstrap})
        producer.produce("kept", b"before the halt")
        assert producer.flush(30) == 0
        broker.halt()
        assert not broker.is_running()
        with pytest.raises(local_kafka.LocalKafkaError, match=r"no metadata from 127\.0\.0\.1:"):
            local_kafka.probe_metadata(broker.broker_port, timeout=1.0)
        broker.resume()
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "test"})
        consumer.assign([TopicPartition("kept", 0, OFFSET_BEGINNING)])
        message = consumer.poll(30)
        consumer.close()
        assert message is not None and message.value() == b"before the halt"
    finally:
        broker.stop()
    assert not broker.is_running()
    assert not broker.workdir.exists()


def test_create_topic_makes_the_partitions_and_refuses_a_duplicate(kafka_bootstrap: str) -> None:
    local_kafka.create_topic(kafka_bootstrap, "made-by-hand", partitions=3)
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert len(metadata.topics["made-by-hand"].partitions) == 3
    with pytest.raises(local_kafka.LocalKafkaError, match=r"made-by-hand.*already exists"):
        local_kafka.create_topic(kafka_bootstrap, "made-by-hand")


def test_delete_topic_removes_it_and_a_missing_topic_is_a_readable_error(
    kafka_bootstrap: str,
) -> None:
    local_kafka.create_topic(kafka_bootstrap, "short-lived")
    local_kafka.delete_topic(kafka_bootstrap, "short-lived")
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert "short-lived" not in metadata.topics
    with pytest.raises(local_kafka.LocalKafkaError, match="deleting topic short-lived failed"):
        local_kafka.delete_topic(kafka_bootstrap, "short-lived")
