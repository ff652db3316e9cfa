"""Shared fixtures: one real Apache Kafka broker per test run, started on first use.

A test that asks for ``kafka_bootstrap`` (directly or through ``kafka_topic``) is marked
``kafka`` automatically, so ``pytest -m "not kafka"`` runs everything else without Java. When
the broker cannot start, those tests fail with the broker's log, never skip.
"""

from __future__ import annotations

import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

# deploy/kafka is a script directory, not a package; its module is stdlib-only on purpose.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "deploy" / "kafka"))

import local_kafka

TOPIC_READY_TIMEOUT_S = 30.0


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kafka_bootstrap" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """``host:port`` of a broker that lives for the whole test session."""
    try:
        broker = local_kafka.start()
    except local_kafka.LocalKafkaError as error:
        pytest.fail(f"the local Kafka broker could not start: {error}", pytrace=False)
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def kafka_topic(kafka_bootstrap: str, request: pytest.FixtureRequest) -> Callable[..., str]:
    """Factory: ``kafka_topic(partitions=1)`` creates a topic unique to this test, ready to use."""
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    prefix = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:180]

    def create(partitions: int = 1) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        futures = admin.create_topics([NewTopic(name, num_partitions=partitions)])
        futures[name].result(timeout=TOPIC_READY_TIMEOUT_S)
        # Creation is acknowledged by the controller; wait until the broker can serve it.
        deadline = time.monotonic() + TOPIC_READY_TIMEOUT_S
        while not _serves(admin, name, partitions):
            if time.monotonic() > deadline:
                pytest.fail(f"topic {name} has no leader after {TOPIC_READY_TIMEOUT_S:.0f} s")
            time.sleep(0.1)
        return name

    return create


def _serves(admin: AdminClient, topic: str, partitions: int) -> bool:
    metadata = admin.list_topics(topic, timeout=TOPIC_READY_TIMEOUT_S).topics[topic]
    leaders = [part.leader for part in metadata.partitions.values()]
    return metadata.error is None and len(leaders) == partitions and min(leaders) >= 0
