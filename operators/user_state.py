"""The user step: a user's recent history, seen items and interest profile.

Keyed by ``user_id``. For each closed window of the user's events, :meth:`UserState.on_events`
records them and emits one scatter: one :class:`ItemMessage` per distinct recent item (each
both asks for the item's neighbours and links it to the window's items), one
:class:`TrendMessage`, then the :class:`RankHeader` for the user's rank shard.

>>> from operators.events import Event
>>> config = EngineConfig()
>>> state = UserState()
>>> step = state.on_events([Event("u1", "i1", 1_700_000_000_000, "purchase")], config)
>>> [message.item_id for message in step.items], step.header.labels, step.header.before
(['i1'], ('i1',), 0)
>>> step = state.on_events([Event("u1", "i2", 1_700_000_060_000, "view")], config)
>>> [(message.item_id, message.links) for message in step.items]
[('i1', (('i2', 0.9999..., None),)), ('i2', (('i1', 0.9999..., None),))]
>>> step.header.request, sorted(step.header.seen)
(('u1', 2), ['i1', 'i2'])
>>> UserState.restore(state.snapshot()).snapshot() == state.snapshot()
True
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from operators.engine_config import EngineConfig
from operators.events import Event
from operators.messages import ForgetUser, ItemMessage, RankHeader, TrendMessage

UserSnapshot = dict[str, object]
#: One history entry: (item_id, ts, weight, category).
Entry = tuple[str, int, float, str | None]


def rank_shard(user_id: str, shards: int) -> int:
    """The rank shard of a user: a stable hash (never Python's salted ``hash``).

    >>> rank_shard("u1", 8)
    6
    """
    return zlib.crc32(user_id.encode()) % shards


def forget_user(event: Event, config: EngineConfig) -> ForgetUser:
    """What a ``forget_user`` event sends once the user's state is deleted: a message to the
    rank shard, which drops the user's pending requests and answers with a tombstone."""
    return ForgetUser(event.user_id, rank_shard(event.user_id, config.shards), event.ts)


@dataclass(slots=True)
class UserStep:
    """What one window of a user's events sends, in this order: items, trend, header."""

    items: list[ItemMessage]
    trend: TrendMessage
    header: RankHeader


class UserState:
    """A user's bounded recent history, seen items, category profile and version."""

    __slots__ = ("history", "last_ts", "profile", "profile_ts", "seen", "version")

    def __init__(self) -> None:
        #: (item_id, ts, weight, category), oldest first, at most ``history_cap`` long.
        self.history: deque[Entry] = deque()
        #: Items to exclude, in first-seen order (a dict as an ordered set).
        self.seen: dict[str, None] = {}
        #: Category -> decayed interest as of ``profile_ts``.
        self.profile: dict[str, float] = {}
        self.profile_ts = 0
        self.version = 0
        self.last_ts = 0

    def is_idle(self, now: int, config: EngineConfig) -> bool:
        """True when the user had no event for ``idle_ms`` (the state may be dropped)."""
        return now - self.last_ts > config.idle_ms

    def on_events(self, events: Sequence[Event], config: EngineConfig) -> UserStep:
        """Record one window of this user's events and build its scatter."""
        user_id = events[0].user_id
        as_of = max(event.ts for event in events)
        basket_start = min(event.ts for event in events)
        window: dict[str, Entry] = {}
        for event in events:
            assert event.item_id is not None, "forget_user events never reach a user step"
            weight = config.type_weight(event.type, event.value)
            window[event.item_id] = (event.item_id, event.ts, weight, event.category)
        labels = tuple(item_id for item_id in window if item_id not in self.seen)
        profile = self._decayed_profile(as_of, config)
        budget = max(0, config.query_recent - len(window))
        others = _distinct_recent(self.history, budget, window)
        # Items recorded at the window's moment form one basket with it: the training list is
        # built only from what the user had before the basket.
        before = [entry for entry in others if entry[1] < basket_start]
        queried = [*before, *(e for e in others if e[1] >= basket_start), *window.values()]
        self._record(window.values(), config)

        shard = rank_shard(user_id, config.shards)
        request = (user_id, self.version)
        titles = {event.item_id: event.title for event in events}
        messages = []
        for entry in queried:
            if entry[0] in window:
                links = tuple(
                    (other[0], _link_weight(entry, other, config), other[3])
                    for other in queried
                    if other[0] != entry[0]
                )
                message = ItemMessage(
                    entry[0], as_of, request, shard, links, entry[2], titles[entry[0]], entry[3]
                )
            else:
                links = tuple(
                    (new[0], _link_weight(new, entry, config), new[3]) for new in window.values()
                )
                message = ItemMessage(entry[0], as_of, request, shard, links)
            messages.append(message)
        trend = TrendMessage(as_of, request, shard, tuple((e[0], e[2]) for e in window.values()))
        header = RankHeader(
            request=request,
            shard=shard,
            as_of=as_of,
            history=tuple(queried),
            before=len(before),
            labels=labels,
            seen=frozenset(self.seen),
            parts=len(messages) + 1,
            profile=profile,
        )
        return UserStep(messages, trend, header)

    def _record(self, window: Iterable[Entry], config: EngineConfig) -> None:
        history = self.history
        seen = self.seen
        for entry in window:
            history.append(entry)
            if len(history) > config.history_cap:
                history.popleft()
            seen.pop(entry[0], None)
            seen[entry[0]] = None
            if len(seen) > config.seen_cap:
                del seen[next(iter(seen))]
            if entry[3] is not None:
                self._add_interest(entry[3], entry[1], entry[2], config)
            self.last_ts = max(self.last_ts, entry[1])
        self.version += 1

    def _add_interest(self, category: str, ts: int, weight: float, config: EngineConfig) -> None:
        if ts > self.profile_ts:
            factor = 0.5 ** ((ts - self.profile_ts) / config.profile_half_life_ms)
            self.profile = {name: score * factor for name, score in self.profile.items()}
            self.profile_ts = ts
        self.profile[category] = self.profile.get(category, 0.0) + weight
        if len(self.profile) > config.profile_cap:
            weakest = min(self.profile, key=self.profile.__getitem__)
            del self.profile[weakest]

    def _decayed_profile(self, now: int, config: EngineConfig) -> tuple[tuple[str, float], ...]:
        factor = 0.5 ** (max(0, now - self.profile_ts) / config.profile_half_life_ms)
        return tuple((name, score * factor) for name, score in self.profile.items())

    def snapshot(self) -> UserSnapshot:
        return {
            "history": [list(entry) for entry in self.history],
            "seen": list(self.seen),
            "profile": dict(self.profile),
            "profile_ts": self.profile_ts,
            "version": self.version,
            "last_ts": self.last_ts,
        }

    @classmethod
    def restore(cls, snapshot: UserSnapshot) -> UserState:
        state = cls()
        state.history = deque(tuple(entry) for entry in snapshot["history"])  # type: ignore[attr-defined]
        state.seen = dict.fromkeys(snapshot["seen"])  # type: ignore[arg-type]
        state.profile = dict(snapshot["profile"])  # type: ignore[call-overload]
        state.profile_ts = int(snapshot["profile_ts"])  # type: ignore[call-overload]
        state.version = int(snapshot["version"])  # type: ignore[call-overload]
        state.last_ts = int(snapshot["last_ts"])  # type: ignore[call-overload]
        return state


def _distinct_recent(history: deque[Entry], count: int, exclude: dict[str, Entry]) -> list[Entry]:
    """The latest entries of the ``count`` most recent distinct items not in ``exclude``,
    oldest first."""
    found: dict[str, Entry] = {}
    if count:
        for entry in reversed(history):
            if entry[0] not in found and entry[0] not in exclude:
                found[entry[0]] = entry
                if len(found) == count:
                    break
    return list(reversed(found.values()))


def _link_weight(new: Entry, other: Entry, config: EngineConfig) -> float:
    """Co-occurrence evidence between two of a user's events: the weaker event's weight,
    halved per ``link_gap_half_life_ms`` between them."""
    gap = abs(new[1] - other[1])
    return min(new[2], other[2]) * 0.5 ** (gap / config.link_gap_half_life_ms)
