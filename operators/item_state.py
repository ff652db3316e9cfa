"""The item step: an item's neighbours by co-occurrence, and its popularity, decayed in event time.

Keyed by ``item_id``. A message may ask for the neighbours (the item replies with a
:class:`RankPart` *before* it applies the message's update, so a reply never reflects the
event that caused it) and carries links to add. Weights decay with ``link_half_life_ms`` by
forward decay: a link stores ``weight * 2 ** ((ts - ref) / half_life)`` against the item's
reference time ``ref``, so adding is O(1) and a reply just sends one ``scale`` factor. When the
links exceed ``2 * neighbours`` they are pruned to the strongest ``neighbours``.

A reply carries the item's strongest ``reply_neighbours`` links, from a list the item re-sorts
after every ``reply_refresh`` updates (at once while it has no more links than that), so a
reply costs no copying and each request gathers a bounded number of candidates.

>>> from operators.messages import ItemMessage
>>> config = EngineConfig(neighbours=2)
>>> item = ItemState()
>>> item.on_message(ItemMessage("i1", 0, ("u1", 1), 3, links=(("i2", 1.0, None),)), config).items
()
>>> part = item.on_message(ItemMessage("i1", 0, ("u2", 1), 3, links=(("i3", 2.0, "toys"),)), config)
>>> part.items, part.weights, part.scale
(('i2',), (1.0,), 1.0)
>>> day = 86_400_000
>>> part = item.on_message(ItemMessage("i1", 60 * day, ("u3", 1), 3), config)
>>> part.items, part.weights, part.scale, part.categories
(('i2', 'i3'), (1.0, 2.0), 0.5, (None, 'toys'))
"""

from __future__ import annotations

import heapq
from operator import itemgetter

from operators.engine_config import EngineConfig
from operators.messages import ItemMessage, RankPart

ItemSnapshot = dict[str, object]

#: The neighbours a reply carries: ids, stored weights, categories (empty when none known).
Top = tuple[tuple[str, ...], tuple[float, ...], tuple[str | None, ...]]

# Rescale the stored weights before the forward-decay factor could overflow a float.
_MAX_EXPONENT = 60.0


class ItemState:
    """Bounded neighbour links and decayed popularity of one item."""

    __slots__ = (
        "categories",
        "category",
        "last_ts",
        "links",
        "popularity",
        "ref",
        "stale",
        "title",
        "top",
    )

    def __init__(self) -> None:
        #: Neighbour -> stored link weight (forward decay against ``ref``).
        self.links: dict[str, float] = {}
        #: Neighbour -> its category, for neighbours whose category is known.
        self.categories: dict[str, str] = {}
        #: The strongest links as last sorted, and updates since.
        self.top: Top = ((), (), ())
        self.stale = 0
        self.ref = 0
        self.popularity = 0.0
        self.last_ts = 0
        self.title: str | None = None
        self.category: str | None = None

    def is_idle(self, now: int, config: EngineConfig) -> bool:
        """True when the item had no event for ``idle_ms`` (the state may be dropped)."""
        return now - self.last_ts > config.idle_ms

    def on_message(self, message: ItemMessage, config: EngineConfig) -> RankPart | None:
        """Reply if asked (from the state before this message), then apply the update."""
        part = self.reply(message, config) if message.request is not None else None
        self.apply(message, config)
        return part

    def reply(self, message: ItemMessage, config: EngineConfig) -> RankPart:
        assert message.request is not None
        scale = 0.5 ** ((message.ts - self.ref) / config.link_half_life_ms)
        items, weights, categories = self.top
        return RankPart(
            request=message.request,
            shard=message.shard,
            source=message.item_id,
            items=items,
            weights=weights,
            scale=scale,
            popularity=self.popularity * scale,
            categories=categories,
        )

    def apply(self, message: ItemMessage, config: EngineConfig) -> None:
        if message.title is not None:
            self.title = message.title
        if message.category is not None:
            self.category = message.category
        self.last_ts = max(self.last_ts, message.ts)
        if not (message.links or message.weight):
            return
        half_life = config.link_half_life_ms
        if not self.links and not self.popularity:
            self.ref = message.ts
        exponent = (message.ts - self.ref) / half_life
        if exponent > _MAX_EXPONENT:
            self._rebase(message.ts, half_life)
            exponent = 0.0
        boost = 2.0**exponent
        self.popularity += message.weight * boost
        if not message.links:
            return
        links = self.links
        for other, weight, category in message.links:
            links[other] = links.get(other, 0.0) + weight * boost
            if category is not None:
                self.categories[other] = category
        if len(links) > 2 * config.neighbours:
            self._prune(config.neighbours)
        self.stale += 1
        if len(links) <= config.reply_neighbours or self.stale >= config.reply_refresh:
            self._sort(config.reply_neighbours)

    def _sort(self, keep: int) -> None:
        links = self.links
        if len(links) <= keep:
            items, weights = tuple(links), tuple(links.values())
        else:
            best = heapq.nlargest(keep, links.items(), key=itemgetter(1))
            items = tuple(item for item, _ in best)
            weights = tuple(weight for _, weight in best)
        known = self.categories
        self.top = (items, weights, tuple(map(known.get, items)) if known else ())
        self.stale = 0

    def _rebase(self, ts: int, half_life: int) -> None:
        factor = 0.5 ** ((ts - self.ref) / half_life)
        self.links = {other: weight * factor for other, weight in self.links.items()}
        self.popularity *= factor
        self.ref = ts
        items, weights, categories = self.top
        self.top = (items, tuple(weight * factor for weight in weights), categories)

    def _prune(self, keep: int) -> None:
        self.links = dict(heapq.nlargest(keep, self.links.items(), key=itemgetter(1)))
        self.categories = {
            other: category for other, category in self.categories.items() if other in self.links
        }

    def snapshot(self) -> ItemSnapshot:
        return {
            "links": dict(self.links),
            "categories": dict(self.categories),
            "top": [list(column) for column in self.top],
            "stale": self.stale,
            "ref": self.ref,
            "popularity": self.popularity,
            "last_ts": self.last_ts,
            "title": self.title,
            "category": self.category,
        }

    @classmethod
    def restore(cls, snapshot: ItemSnapshot) -> ItemState:
        state = cls()
        state.links = dict(snapshot["links"])  # type: ignore[call-overload]
        state.categories = dict(snapshot["categories"])  # type: ignore[call-overload]
        items, weights, categories = snapshot["top"]  # type: ignore[misc]
        state.top = (tuple(items), tuple(weights), tuple(categories))
        state.stale = int(snapshot["stale"])  # type: ignore[call-overload]
        state.ref = int(snapshot["ref"])  # type: ignore[call-overload]
        state.popularity = float(snapshot["popularity"])  # type: ignore[arg-type]
        state.last_ts = int(snapshot["last_ts"])  # type: ignore[call-overload]
        state.title = snapshot["title"]  # type: ignore[assignment]
        state.category = snapshot["category"]  # type: ignore[assignment]
        return state
