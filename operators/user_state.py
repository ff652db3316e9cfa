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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain

from operators.engine_config import EngineConfig
from operators.events import Event
from operators.messages import ForgetUser, ItemMessage, RankHeader, TrendMessage

UserSnapshot = dict[str, object]
#: One history entry: (item_id, ts, weight, category).
Entry = tuple[str, int, float, str | None]
#: A link to add at an item: (other item_id, weight, its category).
Link = tuple[str, float, str | None]


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
        #: Item -> its latest (item_id, ts, weight, category), least recent first, at most
        #: ``history_cap`` items.
        self.history: dict[str, Entry] = {}
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
        # Items recorded at the window's moment form one basket with it: the training list is
        # built only from what the user had before the basket, so at least ``query_before`` of
        # the queried items come from there even late in a large basket.
        budget = max(0, config.query_recent - len(window))
        before, basket = _distinct_recent(self.history, budget, window, basket_start)
        keep = min(len(before), max(config.query_before, budget - len(basket)))
        before = before[len(before) - keep :]
        basket = basket[len(basket) - min(len(basket), budget - keep) :]
        others = [*before, *basket]
        queried = [*others, *window.values()]
        self._record(window.values(), config)

        shard = rank_shard(user_id, config.shards)
        request = (user_id, self.version)
        # Each pair of a window item and another queried item is linked both ways, with the
        # weaker event's weight halved per ``link_gap_half_life_ms`` between the two.
        links: dict[str, list[Link]] = {entry[0]: [] for entry in queried}
        half_life = config.link_gap_half_life_ms
        news = list(window.values())
        for index, new in enumerate(news):
            new_id, new_ts, new_weight, new_category = new
            new_links = links[new_id]
            for other in chain(others, news[index + 1 :]):
                weight = min(new_weight, other[2]) * 0.5 ** (abs(new_ts - other[1]) / half_life)
                new_links.append((other[0], weight, other[3]))
                links[other[0]].append((new_id, weight, new_category))
        titles = {event.item_id: event.title for event in events}
        messages = [
            ItemMessage(item_id, as_of, request, shard, tuple(links[item_id]))
            for item_id, _, _, _ in others
        ]
        messages.extend(
            ItemMessage(
                item_id,
                as_of,
                request,
                shard,
                tuple(links[item_id]),
                weight,
                titles[item_id],
                category,
            )
            for item_id, _, weight, category in news
        )
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
            history.pop(entry[0], None)
            history[entry[0]] = entry
            if len(history) > config.history_cap:
                del history[next(iter(history))]
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
            "history": [list(entry) for entry in self.history.values()],
            "seen": list(self.seen),
            "profile": dict(self.profile),
            "profile_ts": self.profile_ts,
            "version": self.version,
            "last_ts": self.last_ts,
        }

    @classmethod
    def restore(cls, snapshot: UserSnapshot) -> UserState:
        state = cls()
        entries = snapshot["history"]
        state.history = {entry[0]: tuple(entry) for entry in entries}  # type: ignore[attr-defined, misc]
        state.seen = dict.fromkeys(snapshot["seen"])  # type: ignore[arg-type]
        state.profile = dict(snapshot["profile"])  # type: ignore[call-overload]
        state.profile_ts = int(snapshot["profile_ts"])  # type: ignore[call-overload]
        state.version = int(snapshot["version"])  # type: ignore[call-overload]
        state.last_ts = int(snapshot["last_ts"])  # type: ignore[call-overload]
        return state


def _distinct_recent(
    history: dict[str, Entry], count: int, exclude: dict[str, Entry], basket_start: int
) -> tuple[list[Entry], list[Entry]]:
    """The ``count`` most recent items not in ``exclude`` from before ``basket_start``, and
    those from the basket (at or after it), each oldest first."""
    before: list[Entry] = []
    basket: list[Entry] = []
    if count:
        for entry in reversed(history.values()):
            if entry[0] in exclude:
                continue
            found = basket if entry[1] >= basket_start else before
            if len(found) < count:
                found.append(entry)
            elif len(before) == count:
                break
    before.reverse()
    basket.reverse()
    return before, basket
