"""Keep the thread that runs Bytewax's ``cluster_main`` from slowing the workers it waits for.

``cluster_main`` (a cluster replay, ``bytewax.run -i/-a``) runs each worker in a thread of its
own, while the calling thread loops: it sleeps a millisecond, then takes the GIL to look for
signals. A busy worker lets go of the GIL every time it returns from Python, so the polling
thread is woken thousands of times a second and takes a core from a worker. A 2-process replay
of Online Retail on 2 cores (all processes, start-up included) switched context 90,000 to
110,000 times and spent 1.4-1.9 s in the kernel; with the pollers idle, about 20,000 times and
0.8-1.0 s. Its events/s moved within this machine's noise (seven paired runs, -9% to +22%).

:func:`idle_once_workers_run` moves the polling thread to Linux's ``SCHED_IDLE`` class once
the process's workers have started (a thread it starts afterwards would inherit the class): it
then runs only on a core that nothing else wants. A thread cannot leave that class without
privileges, so it is only for a thread that ends with the dataflow. Elsewhere than Linux it does
nothing.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

_TASKS = Path("/proc/self/task")
#: How timely names its worker threads (``timely:work-0``, ``timely:work-1``, ...).
_WORKER_NAME = "timely:work-"


def worker_threads() -> int:
    """How many of this process's threads are timely workers."""
    count = 0
    for task in _TASKS.iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            count += (task / "comm").read_text().startswith(_WORKER_NAME)
    return count


@contextlib.contextmanager
def idle_once_workers_run(workers: int, poll_s: float = 0.05) -> Iterator[None]:
    """Within the block, put the calling thread in ``SCHED_IDLE`` as soon as ``workers`` timely
    worker threads run in this process (watched from a thread that ends with the block)."""
    if not hasattr(os, "SCHED_IDLE") or not _TASKS.is_dir():
        yield
        return
    poller = threading.get_native_id()
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            if worker_threads() >= workers:
                with contextlib.suppress(OSError):  # a sandbox that forbids it: no harm done
                    os.sched_setscheduler(poller, os.SCHED_IDLE, os.sched_param(0))
                return
            done.wait(poll_s)

    watcher = threading.Thread(target=watch, name="streamrec-idle-poller", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join()  # so that it never touches a thread id the system has given to another
