"""The user step: a user's recent history, seen items and interest profile.

Keyed by ``user_id``. Each event is learned at once: :meth:`UserState.on_event` records it and
emits one scatter, one :class:`ItemMessage` per distinct recent item (linking it to the event's
item) plus one for the event's item (its links, popularity and metadata), and one
:class:`TrendMessage`. When the event trains the ranker or serves a list, every message also
asks for a reply and a :class:`RankHeader` for the user's rank shard completes the scatter.
:meth:`UserState.serve` asks for a fresh list without an event (a window closed later).

>>> from operators.events import Event
>>> config = EngineConfig()
>>> state = UserState("u1")
>>> step = state.on_event(Event("u1", "i1", 1_700_000_000_000, "purchase"), config)
>>> [message.item_id for message in step.items], step.header.labels, step.header.before
(['i1'], ('i1',), 0)
>>> step = state.on_event(Event("u1", "i2", 1_700_000_060_000, "view"), config)
>>> [(message.item_id, message.links) for message in step.items]
[('i1', (('i2', 0.9999..., None),)), ('i2', (('i1', 0.9999..., None),))]
>>> step.header.request, step.header.version, sorted(step.header.seen)
(('u1', 2), 2, ['i1', 'i2'])
>>> step = state.on_event(Event("u1", "i3", 1_700_000_070_000, "view"), config, serve=False)
>>> step.header.version, state.serve(config).header.version
(None, 3)
>>> UserState.restore(state.snapshot()).snapshot() == state.snapshot()
True
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from operators.engine_config import EngineConfig
from operators.events import Event
from operators.messages import ForgetUser, ItemMessage, RankHeader, RequestId, TrendMessage

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
    """What one event (or a closed window) sends, in this order: items, trend, header (None
    when nothing is asked of the rank step)."""

    items: list[ItemMessage]
    trend: TrendMessage
    header: RankHeader | None


class UserState:
    """A user's bounded recent history, seen items, category profile and version."""

    __slots__ = (
        "history",
        "last_ts",
        "profile",
        "profile_ts",
        "requests",
        "seen",
        "user_id",
        "version",
    )

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        #: Item -> its latest (item_id, ts, weight, category), least recent first, at most
        #: ``history_cap`` items.
        self.history: dict[str, Entry] = {}
        #: Items to exclude, in first-seen order (a dict as an ordered set).
        self.seen: dict[str, None] = {}
        #: Category -> decayed interest as of ``profile_ts``.
        self.profile: dict[str, float] = {}
        self.profile_ts = 0
        #: Lists served and requests sent so far (a request serves, trains, or both).
        self.version = 0
        self.requests = 0
        self.last_ts = 0

    def is_idle(self, now: int, config: EngineConfig) -> bool:
        """True when the user had no event for ``idle_ms`` (the state may be dropped)."""
        return now - self.last_ts > config.idle_ms

    def on_event(
        self, event: Event, config: EngineConfig, *, train: bool = True, serve: bool = True
    ) -> UserStep:
        """Record one event and build its scatter; with ``train`` or ``serve``, a request."""
        assert event.item_id is not None, "forget_user events never reach a user step"
        item_id = event.item_id
        weight = config.type_weight(event.type, event.value)
        new: Entry = (item_id, event.ts, weight, event.category)
        request = self._next_request() if train or serve else None
        # One pass over the history: the items to link are the most recent of those to query,
        # and one message to each does both.
        count = max(config.query_recent, config.link_recent) if request else config.link_recent
        recent = _recent(self.history, count, item_id)
        split = len(recent) - min(config.link_recent, len(recent))
        labels = (item_id,) if train and item_id not in self.seen else ()
        profile = self._decayed_profile(event.ts, config) if request else ()
        self._record(new, config)
        shard = rank_shard(event.user_id, config.shards)
        # The event's item and each recent one are linked both ways, the weaker event's
        # weight halved per ``link_gap_half_life_ms`` between the two.
        half_life = config.link_gap_half_life_ms
        ts, category = event.ts, event.category
        links: list[Link] = []
        messages = [ItemMessage(entry[0], ts, request, shard) for entry in recent[:split]]
        for other_id, other_ts, other_weight, other_category in recent[split:]:
            link = min(weight, other_weight) * 0.5 ** (abs(ts - other_ts) / half_life)
            links.append((other_id, link, other_category))
            messages.append(ItemMessage(other_id, ts, request, shard, ((item_id, link, category),)))
        messages.append(
            ItemMessage(item_id, ts, request, shard, tuple(links), weight, event.title, category)
        )
        trend = TrendMessage(ts, request, shard, ((item_id, weight),))
        header = None
        if request is not None:
            header = self._header(request, shard, (*recent, new), len(recent), labels, profile)
            header.version = self._next_version() if serve else None
        return UserStep(messages, trend, header)

    def serve(self, config: EngineConfig) -> UserStep:
        """A request for a fresh list from the recent history, learning nothing."""
        request = self._next_request()
        shard = rank_shard(request[0], config.shards)
        rows = _recent(self.history, config.query_recent, None)
        messages = [ItemMessage(entry[0], self.last_ts, request, shard) for entry in rows]
        trend = TrendMessage(self.last_ts, request, shard)
        profile = self._decayed_profile(self.last_ts, config)
        header = self._header(request, shard, rows, len(rows), (), profile)
        header.version = self._next_version()
        return UserStep(messages, trend, header)

    def _header(
        self,
        request: RequestId,
        shard: int,
        history: tuple[Entry, ...],
        before: int,
        labels: tuple[str, ...],
        profile: tuple[tuple[str, float], ...],
    ) -> RankHeader:
        return RankHeader(
            request=request,
            shard=shard,
            as_of=self.last_ts,
            history=history,
            before=before,
            labels=labels,
            seen=frozenset(self.seen),
            parts=len(history) + 1,
            profile=profile,
        )

    def _next_request(self) -> RequestId:
        self.requests += 1
        return (self.user_id, self.requests)

    def _next_version(self) -> int:
        self.version += 1
        return self.version

    def _record(self, entry: Entry, config: EngineConfig) -> None:
        history = self.history
        seen = self.seen
        item_id, ts, weight, category = entry
        history.pop(item_id, None)
        history[item_id] = entry
        if len(history) > config.history_cap:
            del history[next(iter(history))]
        seen.pop(item_id, None)
        seen[item_id] = None
        if len(seen) > config.seen_cap:
            del seen[next(iter(seen))]
        if category is not None:
            self._add_interest(category, ts, weight, config)
        self.last_ts = max(self.last_ts, ts)

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
            "user_id": self.user_id,
            "version": self.version,
            "requests": self.requests,
            "last_ts": self.last_ts,
        }

    @classmethod
    def restore(cls, snapshot: UserSnapshot) -> UserState:
        state = cls(str(snapshot["user_id"]))
        entries = snapshot["history"]
        state.history = {entry[0]: tuple(entry) for entry in entries}  # type: ignore[attr-defined, misc]
        state.seen = dict.fromkeys(snapshot["seen"])  # type: ignore[arg-type]
        state.profile = dict(snapshot["profile"])  # type: ignore[call-overload]
        state.profile_ts = int(snapshot["profile_ts"])  # type: ignore[call-overload]
        state.version = int(snapshot["version"])  # type: ignore[call-overload]
        state.requests = int(snapshot["requests"])  # type: ignore[call-overload]
        state.last_ts = int(snapshot["last_ts"])  # type: ignore[call-overload]
        return state


def _recent(history: dict[str, Entry], count: int, exclude: str | None) -> tuple[Entry, ...]:
    """The ``count`` most recent items of ``history`` other than ``exclude``, oldest first."""
    recent: list[Entry] = []
    if count > 0:
        for entry in reversed(history.values()):
            if entry[0] != exclude:
                recent.append(entry)
                if len(recent) == count:
                    break
    recent.reverse()
    return tuple(recent)
