"""The messages the recommender's keyed steps send each other.

One event (or one closed window of a user's events) makes the user step emit, in this order:
one :class:`ItemMessage` per queried item key, one :class:`TrendMessage` for the trend key and
one :class:`RankHeader` for the user's rank shard. Item and trend steps answer a request with
a :class:`RankPart` for the same shard; when the rank step holds the header and all its parts it
emits a :class:`Recommendation`. A ``forget_user`` event becomes a :class:`ForgetUser` for the
rank shard, which answers with a :class:`Tombstone` (a null value for the user's output key).

All messages are small slotted dataclasses of primitives, so they pickle cheaply between workers.

>>> request = ("u1", 3)
>>> part = RankPart(request, shard=5, source="i1", items=("i2", "i3"), weights=(2.0, 1.0))
>>> part.source, part.items
('i1', ('i2', 'i3'))
>>> Recommendation("u1", [("i2", 0.9)], as_of=1700000000000, version=3, model="streamrec").to_json()
b'{"user_id":"u1","items":[{"item_id":"i2","score":0.9}],"as_of":1700000000000,"version":3,"model":"streamrec"}'
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

#: Identifies one gather at the rank step: ``(user_id, n)`` for the user's ``n``-th request.
RequestId = tuple[str, int]

#: The key of the single trend step.
TREND_KEY = "__trend__"


@dataclass(slots=True)
class ItemMessage:
    """To the item step of ``item_id``: maybe a request for its neighbours, then an update.

    ``links`` are co-occurrence weights to add towards other items (each with its category, or
    None); ``weight`` is how much popularity to add (0 for an item that is only linked to).
    The item replies *before* it applies the update, so a reply never contains the window.
    """

    item_id: str
    ts: int
    request: RequestId | None
    shard: int
    links: tuple[tuple[str, float, str | None], ...] = ()
    weight: float = 0.0
    title: str | None = None
    category: str | None = None


@dataclass(slots=True)
class TrendMessage:
    """To the trend step: popularity to add per item, and maybe a request for the trending items."""

    ts: int
    request: RequestId | None
    shard: int
    items: tuple[tuple[str, float], ...] = ()


@dataclass(slots=True)
class RankHeader:
    """To the rank shard: everything the ranker needs from the user for one request.

    ``history`` holds ``(item_id, ts, weight, category)`` of the queried distinct items, oldest
    first; its first ``before`` entries are what the user had before the event that caused the
    request (the training list is built from them), the rest is that event's item. ``labels``
    are the items of that event the user had not seen before (training positives; empty when
    the request only serves). ``seen`` are the items to exclude from the served list (the
    labels included). ``profile`` is the category interest before the event. ``parts`` is how
    many :class:`RankPart` replies complete the request. ``version`` is the version of the list
    to serve, or None when the request only trains the ranker.
    """

    request: RequestId
    shard: int
    as_of: int
    history: tuple[tuple[str, int, float, str | None], ...]
    before: int
    labels: tuple[str, ...]
    seen: frozenset[str]
    parts: int
    profile: tuple[tuple[str, float], ...] = ()
    version: int | None = None


@dataclass(slots=True)
class RankPart:
    """A reply to one request, from an item (its neighbours) or from the trend step.

    From an item: ``items``/``weights`` are its neighbours and their stored link weights, to be
    multiplied by ``scale`` (decay to the request's time); ``popularity`` is the item's own
    decayed popularity and ``categories`` the neighbours' categories where known.
    From the trend step (``source == TREND_KEY``): the trending items with their short and long
    half-life popularity (only comparable within one reply; ``scale`` is 1).
    """

    request: RequestId
    shard: int
    source: str
    items: tuple[str, ...]
    weights: tuple[float, ...]
    scale: float = 1.0
    popularity: float = 0.0
    long_weights: tuple[float, ...] = ()
    categories: tuple[str | None, ...] = ()


@dataclass(slots=True)
class ForgetUser:
    """To the rank shard of a user whose state was deleted (a ``forget_user`` event)."""

    user_id: str
    shard: int
    as_of: int


@dataclass(slots=True)
class Tombstone:
    """The rank step's answer to :class:`ForgetUser`: the user's output becomes null."""

    user_id: str
    as_of: int


@dataclass(slots=True)
class Recommendation:
    """The list handed out for a user after the window ``version`` (scores best first)."""

    user_id: str
    items: list[tuple[str, float]]
    as_of: int
    version: int
    model: str

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "user_id": self.user_id,
                "items": [{"item_id": item, "score": score} for item, score in self.items],
                "as_of": self.as_of,
                "version": self.version,
                "model": self.model,
            }
        )
