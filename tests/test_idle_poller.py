"""The idle poller: Bytewax's worker threads are found by name, and the polling thread goes to
``SCHED_IDLE`` only once they run (Linux, as the job's pods and CI)."""

from __future__ import annotations

import os
import threading
import time

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, cluster_main

from dataflows.idle_poller import idle_once_workers_run, worker_threads


def test_the_worker_threads_of_a_cluster_are_found_by_their_name() -> None:
    counts: list[int] = []

    def count(item: int) -> int:
        counts.append(worker_threads())
        return item

    flow = Dataflow("names")
    op.output(
        "out",
        op.map("count", op.input("in", flow, TestingSource(range(4))), count),
        TestingSink([]),
    )
    assert worker_threads() == 0
    cluster_main(flow, [], 0, worker_count_per_proc=2)
    assert counts and set(counts) == {2}
    assert worker_threads() == 0, "they are gone after the run"


def _policy_within(workers: int, seconds: float) -> int:
    """The scheduling class of a thread ``seconds`` into an :func:`idle_once_workers_run`
    block for ``workers`` workers (sooner if it went idle)."""
    policies: list[int] = []

    def poll() -> None:
        with idle_once_workers_run(workers, poll_s=0.01):
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline and os.sched_getscheduler(0) != os.SCHED_IDLE:
                time.sleep(0.01)
            policies.append(os.sched_getscheduler(0))

    thread = threading.Thread(target=poll)
    thread.start()
    thread.join()
    return policies[0]


def test_the_poller_goes_idle_once_the_workers_run_and_not_before() -> None:
    assert _policy_within(workers=1, seconds=0.3) == os.SCHED_OTHER, "no worker runs yet"
    assert _policy_within(workers=0, seconds=5.0) == os.SCHED_IDLE
    assert os.sched_getscheduler(0) == os.SCHED_OTHER, "other threads keep their class"
    watchers = [thread for thread in threading.enumerate() if thread.name.endswith("poller")]
    assert not watchers, "the watchers ended with their blocks"
