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
"""

from __future__ import annotations

from operators.candidates import Entry
from operators.engine_config import EngineConfig
from operators.events import Event
from operators.item_model import Observation
from operators.messages import Label, ReplicaMessage, Serve, Train

UserSnapshot = tuple[str, tuple[Entry, ...], tuple[str, ...], int, float, int, int]


class UserState:
    """A user's bounded recent history, seen items, rating statistics and version."""

    __slots__ = ("history", "last_ts", "rating_sum", "ratings", "seen", "user_id", "version")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        #: Item -> its latest (item_id, ts, weight), least recent first, at most
        #: ``history_cap`` items.
        self.history: dict[str, Entry] = {}
        #: Items to exclude, in first-seen order (a dict as an ordered set).
        self.seen: dict[str, None] = {}
        self.ratings = 0
        self.rating_sum = 0.0
        #: Lists served so far.
        self.version = 0
        self.last_ts = 0

    def on_event(
        self, event: Event, config: EngineConfig, *, train: bool = True, serve: bool = True
    ) -> list[ReplicaMessage]:
        """Record one event; the messages it sends, in order."""
        item_id = event.item_id
        if item_id is None:
            raise ValueError("forget_user events never reach a user step")
        mean = self.rating_sum / self.ratings if self.ratings else None
        weight = config.type_weight(event.type, event.value, mean)
        if event.type == "rating" and event.value is not None:
            self.ratings += 1
            self.rating_sum += event.value
        first = item_id not in self.seen
        messages: list[ReplicaMessage] = []
        if train:
            before = self._recent(config.query_recent, None)
            label = item_id if first else None
            messages.append(Train(self.user_id, before, tuple(self.seen), label))
        elif first:
            messages.append(Label(self.user_id, item_id))
        recent = self._recent(config.link_recent, item_id)
        messages.append(Observation(item_id, event.ts, weight, first, recent))
        self._record((item_id, event.ts, weight), config)
        if serve:
            messages.append(self.serve(config))
        return messages

    def serve(self, config: EngineConfig) -> Serve:
        """A request for list ``version + 1`` from the recent history, learning nothing."""
        self.version += 1
        history = self._recent(config.query_recent, None)
        return Serve(self.user_id, history, tuple(self.seen), self.version, self.last_ts)

    def _recent(self, count: int, exclude: str | None) -> tuple[Entry, ...]:
        """The ``count`` most recent items other than ``exclude``, oldest first."""
        recent: list[Entry] = []
        if count > 0:
            for entry in reversed(self.history.values()):
                if entry[0] != exclude:
                    recent.append(entry)
                    if len(recent) == count:
                        break
        recent.reverse()
        return tuple(recent)

    def _record(self, entry: Entry, config: EngineConfig) -> None:
        history = self.history
        seen = self.seen
        item_id = entry[0]
        history.pop(item_id, None)
        history[item_id] = entry
        if len(history) > config.history_cap:
            del history[next(iter(history))]
        seen.pop(item_id, None)
        seen[item_id] = None
        if len(seen) > config.seen_cap:
            del seen[next(iter(seen))]
        self.last_ts = max(self.last_ts, entry[1])

    def snapshot(self) -> UserSnapshot:
        return (
            self.user_id,
            tuple(self.history.values()),
            tuple(self.seen),
            self.ratings,
            self.rating_sum,
            self.version,
            self.last_ts,
        )

    @classmethod
    def restore(cls, snapshot: UserSnapshot) -> UserState:
        user_id, history, seen, ratings, rating_sum, version, last_ts = snapshot
        state = cls(user_id)
        state.history = {entry[0]: tuple(entry) for entry in history}  # type: ignore[misc]
        state.seen = dict.fromkeys(seen)
        state.ratings = ratings
        state.rating_sum = rating_sum
        state.version = version
        state.last_ts = last_ts
        return state
