"""``dataflows.routing`` predicts where Bytewax really puts a key: checked on a real cluster."""

from __future__ import annotations

import threading
from collections.abc import Iterable

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import TestingSink, TestingSource, cluster_main

from dataflows.routing import replica_keys, replica_of, worker_of

OTHER_KEYS = [f"user-{n}" for n in range(40)] + ["", "é", "a-much-longer-key-than-eight-bytes"]


class RecordThread(StatefulBatchLogic[str, None, None]):
    """Records which worker thread holds its key (each value is its own key)."""

    def __init__(self, threads: dict[str, set[int]]) -> None:
        self._threads = threads

    def on_batch(self, values: list[str]) -> tuple[Iterable[None], bool]:
        for key in values:
            self._threads.setdefault(key, set()).add(threading.get_ident())
        return [], False

    def snapshot(self) -> None:
        return None


def real_threads(keys: list[str], workers: int) -> dict[str, int]:
    """The worker thread each key's state lives on, in a real ``workers``-worker cluster."""
    threads: dict[str, set[int]] = {}
    flow = Dataflow("routing")
    keyed = op.key_on("key", op.input("in", flow, TestingSource(keys)), lambda key: key)
    recorded = op.stateful_batch("record", keyed, lambda _resume: RecordThread(threads))
    op.output("out", recorded, TestingSink([]))
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    assert set(threads) == set(keys)
    assert all(len(seen) == 1 for seen in threads.values()), "a key stays on one worker"
    return {key: next(iter(seen)) for key, seen in threads.items()}


@pytest.mark.parametrize("workers", [2, 3])
def test_replica_keys_land_on_distinct_workers_and_every_key_where_predicted(workers: int) -> None:
    replicas = replica_keys(workers)
    threads = real_threads([*replicas, *OTHER_KEYS], workers)
    assert len({threads[key] for key in replicas}) == workers, "one replica per worker"
    # The prediction and the real placement group the keys identically.
    thread_of_worker = {worker_of(key, workers): threads[key] for key in replicas}
    assert {key: thread_of_worker[worker_of(key, workers)] for key in OTHER_KEYS} == {
        key: threads[key] for key in OTHER_KEYS
    }


@pytest.mark.parametrize("workers", [2, 3])
def test_a_users_replica_lives_on_the_users_own_worker(workers: int) -> None:
    replicas = replica_keys(workers)
    threads = real_threads([*replicas, *OTHER_KEYS], workers)
    assert all(threads[replica_of(key, replicas)] == threads[key] for key in OTHER_KEYS)
