"""The user step: a user's recent history, seen items, rating mean and list version.

Keyed by ``user_id``. :meth:`UserState.on_event` records one event and returns the messages it
sends to the model replicas, in order (see :mod:`operators.messages`): a :class:`Train` when
the event opens a window (``train``) or a :class:`Label` when it brings a new item into an open
one, the event's :class:`Observation`, and a :class:`Serve` when its window closes with it
(``serve``). :meth:`UserState.serve` asks for a fresh list without an event (a window closed
later).

>>> from operators.events import Event
>>> config = EngineConfig()
>>> state = UserState("u1")
>>> [type(m).__name__ for m in state.on_event(Event("u1", "i1", 1_000, "purchase"), config)]
['Train', 'Observation', 'Serve']
>>> train, observation = state.on_event(Event("u1", "i2", 2_000, "view"), config, serve=False)
>>> train.history, train.label, observation.recent
((('i1', 1000, 5.0),), 'i2', (('i1', 1000, 5.0),))
>>> [type(m).__name__ for m in state.on_event(Event("u1", "i3", 2_500, "view"), config,
...                                           train=False, serve=False)]
['Label', 'Observation']
>>> serve = state.serve(config)
>>> serve.version, [entry[0] for entry in serve.history], sorted(serve.seen)
(2, ['i1', 'i2', 'i3'], ['i1', 'i2', 'i3'])
>>> UserState.restore(state.snapshot()).snapshot() == state.snapshot()
True

**Memory.** The history (the newest ``history_cap`` distinct items) and the seen set (the newest
``seen_cap``) are both suffixes of one sequence, the user's distinct items in the order they were
last seen, so one list holds the items once, and the history's times and weights are two
arrays of machine numbers aligned with its tail. The item ids are interned: a popular item's id
is one string shared by every user and the item model, not one per event parsed. A user with
three events takes about 530 bytes here where dicts of tuples took about 980; a full one
(history 50, seen 1,000) about 10 KB instead of 63 KB (``tests/benchmarks/memory.py parts``).
Membership is a scan of at most ``seen_cap`` pointers, about a microsecond per hundred items.
"""

from __future__ import annotations

import sys
from array import array

from operators.candidates import Entry
from operators.engine_config import EngineConfig
from operators.events import Event
from operators.item_model import Observation
from operators.messages import Label, ReplicaMessage, Serve, Train

UserSnapshot = tuple[str, tuple[Entry, ...], tuple[str, ...], int, float, int, int]


class UserState:
    """A user's bounded recent history, seen items, rating statistics and version."""

    __slots__ = (
        "_items",
        "_seen",
        "_ts",
        "_weights",
        "last_ts",
        "rating_sum",
        "ratings",
        "user_id",
        "version",
    )

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        #: The distinct items, least recently seen first: the history and the seen set are its
        #: tails (see the module docstring); interned.
        self._items: list[str] = []
        #: How many of the newest ``_items`` are seen (at most ``seen_cap``).
        self._seen = 0
        #: Time and weight of each history item's latest event, aligned with the tail of
        #: ``_items`` (at most ``history_cap``).
        self._ts = array("q")
        self._weights = array("d")
        self.ratings = 0
        self.rating_sum = 0.0
        #: Lists served so far.
        self.version = 0
        self.last_ts = 0

    @property
    def history(self) -> tuple[Entry, ...]:
        """(item_id, ts, weight) of the latest event of each history item, oldest first."""
        items = self._items[len(self._items) - len(self._ts) :]
        return tuple(zip(items, self._ts, self._weights, strict=True))

    @property
    def seen(self) -> tuple[str, ...]:
        """The items to exclude from the user's lists, least recently seen first."""
        return tuple(self._items[len(self._items) - self._seen :])

    def on_event(
        self, event: Event, config: EngineConfig, *, train: bool = True, serve: bool = True
    ) -> list[ReplicaMessage]:
        """Record one event; the messages it sends, in order."""
        if event.item_id is None:
            raise ValueError("forget_user events never reach a user step")
        item_id = sys.intern(event.item_id)
        mean = self.rating_sum / self.ratings if self.ratings else None
        weight = config.type_weight(event.type, event.value, mean)
        if event.type == "rating" and event.value is not None:
            self.ratings += 1
            self.rating_sum += event.value
        at = self._position(item_id)
        first = at is None or at < len(self._items) - self._seen
        messages: list[ReplicaMessage] = []
        if train:
            before = self._recent(config.query_recent, None)
            label = item_id if first else None
            messages.append(Train(self.user_id, before, self.seen, label))
        elif first:
            messages.append(Label(self.user_id, item_id))
        recent = self._recent(config.link_recent, item_id)
        messages.append(Observation(item_id, event.ts, weight, first, recent, event.category))
        self._record(item_id, at, event.ts, weight, config)
        if serve:
            messages.append(self.serve(config))
        return messages

    def serve(self, config: EngineConfig) -> Serve:
        """A request for list ``version + 1`` from the recent history, learning nothing."""
        self.version += 1
        history = self._recent(config.query_recent, None)
        return Serve(self.user_id, history, self.seen, self.version, self.last_ts)

    def _position(self, item_id: str) -> int | None:
        """Where ``item_id`` is in ``_items`` (None: nowhere)."""
        try:
            return self._items.index(item_id)
        except ValueError:
            return None

    def _recent(self, count: int, exclude: str | None) -> tuple[Entry, ...]:
        """The ``count`` most recent items other than ``exclude``, oldest first."""
        recent: list[Entry] = []
        items, times, weights = self._items, self._ts, self._weights
        offset = len(items) - len(times)
        for at in range(len(times) - 1 if count > 0 else -1, -1, -1):
            item_id = items[offset + at]
            if item_id != exclude:
                recent.append((item_id, times[at], weights[at]))
                if len(recent) == count:
                    break
        recent.reverse()
        return tuple(recent)

    def _record(
        self, item_id: str, at: int | None, ts: int, weight: float, config: EngineConfig
    ) -> None:
        """Move the item from ``at`` in ``_items`` (None: add it) to the newest end of the
        history and the seen set, each then dropping its oldest item when over its cap."""
        items, times, weights = self._items, self._ts, self._weights
        if at is None:
            self._seen += 1
        else:
            in_history = at - (len(items) - len(times))
            if in_history >= 0:
                del times[in_history], weights[in_history]
            if at < len(items) - self._seen:
                self._seen += 1
            del items[at]
        items.append(item_id)
        times.append(ts)
        weights.append(weight)
        if len(times) > config.history_cap:
            del times[0], weights[0]
        if self._seen > config.seen_cap:
            self._seen -= 1
        if len(items) > max(len(times), self._seen):
            del items[0]
        self.last_ts = max(self.last_ts, ts)

    def snapshot(self) -> UserSnapshot:
        return (
            self.user_id,
            self.history,
            self.seen,
            self.ratings,
            self.rating_sum,
            self.version,
            self.last_ts,
        )

    @classmethod
    def restore(cls, snapshot: UserSnapshot) -> UserState:
        """The state a :meth:`snapshot` was taken of. Its history and seen set are tails of
        one sequence (see the module docstring): anything else is not a user's snapshot."""
        user_id, history, seen, ratings, rating_sum, version, last_ts = snapshot
        state = cls(user_id)
        history_items = [sys.intern(entry[0]) for entry in history]
        seen_items = [sys.intern(item_id) for item_id in seen]
        longer, shorter = sorted((history_items, seen_items), key=len, reverse=True)
        if longer[len(longer) - len(shorter) :] != shorter:
            raise ValueError(f"user {user_id}: the history is not a tail of the seen items")
        state._items = longer
        state._seen = len(seen_items)
        state._ts = array("q", [entry[1] for entry in history])
        state._weights = array("d", [entry[2] for entry in history])
        state.ratings = ratings
        state.rating_sum = rating_sum
        state.version = version
        state.last_ts = last_ts
        return state
