"""Shared fixtures: one real Apache Kafka broker per test run, started on first use.

A test that asks for ``kafka_bootstrap`` (directly or through ``kafka_topic``) is marked
``kafka`` automatically, so ``pytest -m "not kafka"`` runs everything else without Java. When
the broker cannot start, those tests fail with the broker's log, never skip.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# deploy/kafka is a script directory, not a package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "deploy" / "kafka"))

import local_kafka
from fake_clock import Clock

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
    prefix = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:180]

    def create(partitions: int = 1) -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        try:
            local_kafka.create_topic(kafka_bootstrap, name, partitions, TOPIC_READY_TIMEOUT_S)
        except local_kafka.LocalKafkaError as error:
            pytest.fail(str(error), pytrace=False)
        return name

    return create


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The live timers' wall clock, standing still until the test moves it."""
    from dataflows import steps

    fake = Clock()
    monkeypatch.setattr(steps, "_now", fake)
    return fake
