"""Memory of the live job's state, measured through its own classes: one ``UserLogic`` per user
key (the gate and ``UserState``, as Bytewax holds them) and one ``ModelReplica``.

Each mode prints one JSON object::

    .venv/bin/python tests/benchmarks/memory.py users --users 1000000 --items 100000
    .venv/bin/python tests/benchmarks/memory.py idle --seconds 60 --expiry-s 2
    .venv/bin/python tests/benchmarks/memory.py parts

``users``: the RSS growth while every user views two random items a second apart and buys a
third two minutes later (each event with an id, as the gate keeps ids). Serving a list costs
about 2 ms, far more than a user's state, so only the first ``--served`` users' requests reach
the replica; that is enough to fill its kept training lists to ``open_lists``, which is all a
replica ever keeps (their bytes are reported apart). Every event's observation reaches the item
model. The bytes per user are the slope between two runs (``streamrec bench`` runs ``--users N``
and ``N / 2`` side by side).

``idle``: RSS twice a second while users come once (four events a second apart, every list
served) and go idle, with ``--expiry-s`` (none: the default 365 days); the slope of the second
half is what a live job gains per minute once expiry keeps up (``streamrec bench`` runs it with
expiry after 2 s and without, side by side).

``parts``: the bytes of one user's state part by part (deep sizes; objects shared with other
users or the item model, such as interned item ids and the configuration, are not counted): a
user of the ``users`` stream and a long one (history 50, seen 1,000, 100 event ids).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import heapq
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dataflows.routing import replica_keys
from dataflows.steps import Timers, UserLogic, UserOutput
from operators.config import load_config
from operators.events import Event
from operators.intake import Admitted, Origin
from operators.item_model import Observation
from operators.replica import ModelReplica

PAGE = resource.getpagesize()
T0 = 1_704_067_200_000
#: (ms after the user's first event, type) of each of a user's three events.
VISITS = ((0, "view"), (1_000, "view"), (120_000, "purchase"))
ORIGIN = Origin("memory", 0)


def rss_bytes() -> int:
    gc.collect()
    return int(Path("/proc/self/statm").read_text().split()[1]) * PAGE


class Job:
    """The user step's logics keyed by user, and one replica: what a one-worker job holds.

    ``reaches_replica(user_id)`` says whether a user's own requests are applied (observations
    always are); live ``timers`` run when :meth:`tick` finds them due."""

    def __init__(self, timers: Timers, reaches_replica: Callable[[str], bool]) -> None:
        config = load_config(None)
        self.engine, self.settings, self.timers = config.engine, config.gate_settings(), timers
        #: One list for all users, as the dataflow passes it.
        self.replica_keys = replica_keys(1)
        self.replica = ModelReplica(self.engine)
        self.logics: dict[str, UserLogic] = {}
        self._reaches_replica = reaches_replica

    def offer(self, seq: int, event: Event) -> None:
        user_id = event.user_id
        logic = self.logics.get(user_id)
        if logic is None:
            logic = UserLogic(
                self.engine, self.settings, self.timers, None, replicas=self.replica_keys
            )
            self.logics[user_id] = logic
        self._after(user_id, *logic.on_batch([[Admitted(seq, event, ORIGIN, b"")]]))

    def tick(self) -> None:
        """Run the timers that are due (a sweep over all users: the idle benchmark holds few)."""
        now = datetime.now(UTC)
        for user_id, logic in list(self.logics.items()):
            due = logic.notify_at()
            if due is not None and due <= now:
                self._after(user_id, *logic.on_notify())

    def _after(self, user_id: str, outputs: Iterable[object], discard: bool) -> None:
        reaches = self._reaches_replica(user_id)
        for output in outputs:
            if not isinstance(output, UserOutput):
                raise RuntimeError(f"unexpected output {output!r}")
            for _seq, message in output.messages:
                if reaches or isinstance(message, Observation):
                    self.replica.on_message(message)
        if discard:
            del self.logics[user_id]


def three_visits(users: int, items: int, seed: int) -> Iterator[Event]:
    """Each user's three events (:data:`VISITS`), users starting 50 ms apart, in time order;
    made one at a time, so only the random picks (made here, at once) take memory."""
    picks = np.random.default_rng(seed).integers(0, items, size=(users, len(VISITS)))

    def times(visit: int, offset: int) -> Iterator[tuple[int, int, int]]:
        return ((T0 + user * 50 + offset, visit, user) for user in range(users))

    return (
        Event(
            f"u{user}", f"i{picks[user, visit]}", ts, VISITS[visit][1], event_id=f"e{user}-{visit}"
        )
        for ts, visit, user in heapq.merge(*(times(v, o) for v, (o, _) in enumerate(VISITS)))
    )


def users_growth(users: int, items: int, served: int, seed: int) -> dict[str, Any]:
    """The RSS growth of :func:`three_visits` through a :class:`Job` without timers."""
    job = Job(Timers(None, None), lambda user_id: int(user_id[1:]) < served)
    stream = three_visits(users, items, seed)
    before = rss_bytes()
    started = time.perf_counter()
    events = 0
    for events, event in enumerate(stream, 1):
        job.offer(events, event)
    seconds = time.perf_counter() - started
    return {
        "rss_growth_bytes": rss_bytes() - before,
        "users": len(job.logics),
        "items": len(job.replica.items),
        "events": events,
        "served_users": min(served, users),
        "kept_lists": len(job.replica.open),
        "kept_lists_bytes": deep_size(job.replica.open),
        "events_per_s": events / seconds,
    }


def one_time_users(rate: float, seconds: float, per_user: int = 4) -> Iterator[Event]:
    """Users at ``rate`` events per second of wall time, each with ``per_user`` events a second
    apart (over 500 items), never coming back; paced by sleeping."""
    started = time.perf_counter()
    for index in range(round(rate * seconds)):
        ahead = started + index / rate - time.perf_counter()
        if ahead > 0.002:
            time.sleep(ahead)
        user, visit = divmod(index, per_user)
        item = f"i{(user * 7 + visit) % 500}"
        yield Event(f"once-{user}", item, T0 + user * 100 + visit * 1000, "view")


def idle_series(seconds: float, rate: float, expiry: timedelta | None) -> dict[str, Any]:
    """RSS twice a second while :func:`one_time_users` go through a live :class:`Job`."""
    defaults = Timers.from_config(load_config(None))
    job = Job(dataclasses.replace(defaults, user_expire=expiry), lambda _: True)
    started = time.perf_counter()
    at, rss_mb = [], []
    for seq, event in enumerate(one_time_users(rate, seconds)):
        job.offer(seq, event)
        if (now := time.perf_counter() - started) >= len(at) / 2:
            job.tick()
            at.append(now)
            rss_mb.append(rss_bytes() / 2**20)
    half = len(at) // 2
    slope, _ = statistics.linear_regression(at[half:], rss_mb[half:])
    return {
        "expiry_s": None if expiry is None else expiry.total_seconds(),
        "seconds": at[-1],
        "rss_slope_mb_per_min": slope * 60,
        "rss_mb_first_last": [rss_mb[0], rss_mb[-1]],
        "users_held": len(job.logics),
        "kept_lists": len(job.replica.open),
    }


def deep_size(root: object, shared: Iterable[object] = ()) -> int:
    """Bytes of ``root`` and everything it refers to, except ``shared`` objects, classes,
    modules and the interpreter's cached singletons (None, booleans, small ints)."""
    skip = {id(obj) for obj in shared}
    total = 0
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in skip or obj is None or isinstance(obj, bool | type | type(sys)):
            continue
        if isinstance(obj, int) and -5 <= obj <= 256:
            continue
        skip.add(id(obj))
        total += sys.getsizeof(obj)
        stack.extend(gc.get_referents(obj))
    return total


def user_parts(job: Job, events: Iterable[Event]) -> dict[str, int]:
    """Bytes per part of the one user of ``events`` after they went through ``job``."""
    for seq, event in enumerate(events):
        job.offer(seq, event)
    ((user_id, logic),) = job.logics.items()
    engine = job.engine
    shared = [job.replica, engine, job.settings, job.timers, job.replica_keys, *job.replica_keys]
    shared += [*engine.type_weights.values(), *(item for item in job.replica.items.ids if item)]
    parts = {
        "gate": deep_size(logic.gate, shared),
        "user_state": deep_size(logic.state, shared),
        "user_logic_shell": deep_size(logic, [*shared, logic.gate, logic.state]),
    }
    parts["user_total"] = sum(parts.values())
    parts["kept_training_list"] = deep_size(job.replica.open.get(user_id), shared)
    return parts


def parts() -> dict[str, dict[str, int]]:
    """:func:`user_parts` of a user of the ``users`` stream and of a long one, against a
    replica that learned 20,000 users over 10,000 items first (kept lists of a real size)."""
    later = T0 + 10**8
    short = [
        Event("short", f"i{n}", later + offset, kind, event_id=f"e-short-{n}")
        for n, (offset, kind) in enumerate(VISITS)
    ]
    long = [
        Event("long", f"i{n % 1_200}", later + n * 2_000, "view", event_id=f"evt-{n:08d}")
        for n in range(2_400)
    ]
    warm = Job(Timers(None, None), lambda _: False)
    for seq, event in enumerate(three_visits(20_000, 10_000, seed=1)):
        warm.offer(seq, event)
    results = {}
    for name, events in (("three_visits", short), ("history_50_seen_1000", long)):
        job = Job(Timers(None, None), lambda _: True)
        job.replica = warm.replica
        results[name] = user_parts(job, events)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    users = modes.add_parser("users")
    users.add_argument("--users", type=int, required=True)
    users.add_argument("--items", type=int, required=True)
    users.add_argument("--served", type=int, default=20_000)
    users.add_argument("--seed", type=int, default=0)
    idle = modes.add_parser("idle")
    idle.add_argument("--seconds", type=float, default=60)
    idle.add_argument("--rate", type=float, default=300, help="events per second")
    idle.add_argument("--expiry-s", type=float, help="users expire after this idle time")
    modes.add_parser("parts")
    args = parser.parse_args()
    if args.mode == "users":
        result: Any = users_growth(args.users, args.items, args.served, args.seed)
    elif args.mode == "idle":
        expiry = None if args.expiry_s is None else timedelta(seconds=args.expiry_s)
        result = idle_series(args.seconds, args.rate, expiry)
    else:
        result = parts()
    print(orjson.dumps(result).decode())


if __name__ == "__main__":
    main()
