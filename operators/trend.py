"""The trend step: global popularity decayed at a short and a long half-life, and its top items.

One state under the key ``TREND_KEY``. It keeps at most ``2 * trend_capacity`` items (pruned to
the ``trend_capacity`` with the highest long-term popularity, a heavy-hitter table) and every
``trend_refresh`` updates re-sorts the ``trend_top`` items by short-term popularity. A request is
answered with that cached top list (weights comparable within one list, as the rank step only
uses their ratios): the cold-start candidates and the popularity features of the rank step.

>>> from operators.messages import TrendMessage
>>> config = EngineConfig(trend_refresh=1)
>>> trend = TrendState()
>>> trend.on_message(TrendMessage(0, None, 0, (("i1", 1.0), ("i2", 5.0))), config)
>>> part = trend.on_message(TrendMessage(0, ("u1", 1), 0, (("i1", 1.0),)), config)
>>> part.items, part.weights, part.long_weights
(('i2', 'i1'), (5.0, 1.0), (5.0, 1.0))
>>> TrendState.restore(trend.snapshot()).snapshot() == trend.snapshot()
True
"""

from __future__ import annotations

import heapq
from operator import itemgetter

from operators.engine_config import EngineConfig
from operators.messages import TREND_KEY, RankPart, TrendMessage

TrendSnapshot = dict[str, object]

_MAX_EXPONENT = 60.0


class TrendState:
    """Decayed global popularity (short and long half-life) with a cached top list."""

    __slots__ = ("long", "ref", "short", "since_refresh", "top")

    def __init__(self) -> None:
        #: Item -> (short, long) popularity stored by forward decay against ``ref``.
        self.short: dict[str, float] = {}
        self.long: dict[str, float] = {}
        self.ref = 0
        #: The cached top items (by short popularity) with their stored weights.
        self.top: tuple[tuple[str, ...], tuple[float, ...], tuple[float, ...]] = ((), (), ())
        self.since_refresh = 0

    def is_empty(self) -> bool:
        return not self.long

    def on_message(self, message: TrendMessage, config: EngineConfig) -> RankPart | None:
        """Reply if asked (from the state before this message), then apply the update."""
        part = self.reply(message) if message.request is not None else None
        self.apply(message, config)
        return part

    def reply(self, message: TrendMessage) -> RankPart:
        """The cached top list; its weights are only meaningful relative to each other."""
        assert message.request is not None
        items, short, long = self.top
        return RankPart(
            request=message.request,
            shard=message.shard,
            source=TREND_KEY,
            items=items,
            weights=short,
            long_weights=long,
        )

    def apply(self, message: TrendMessage, config: EngineConfig) -> None:
        if not message.items:
            return
        if not self.long:
            self.ref = message.ts
        age = message.ts - self.ref
        if age / config.trend_short_half_life_ms > _MAX_EXPONENT:
            self._rebase(message.ts, config)
            age = 0
        short_boost = 2.0 ** (age / config.trend_short_half_life_ms)
        long_boost = 2.0 ** (age / config.trend_long_half_life_ms)
        short, long = self.short, self.long
        for item, weight in message.items:
            short[item] = short.get(item, 0.0) + weight * short_boost
            long[item] = long.get(item, 0.0) + weight * long_boost
        if len(long) > 2 * config.trend_capacity:
            kept = heapq.nlargest(config.trend_capacity, long.items(), key=itemgetter(1))
            self.long = dict(kept)
            self.short = {item: short[item] for item in self.long}
        self.since_refresh += 1
        if self.since_refresh >= config.trend_refresh:
            self._refresh(config)

    def _refresh(self, config: EngineConfig) -> None:
        short = self.short
        best = heapq.nlargest(config.trend_top, short.items(), key=itemgetter(1))
        items = tuple(item for item, _ in best)
        self.top = (items, tuple(weight for _, weight in best), tuple(map(self.long.get, items)))
        self.since_refresh = 0

    def _rebase(self, ts: int, config: EngineConfig) -> None:
        age = ts - self.ref
        short_factor = 0.5 ** (age / config.trend_short_half_life_ms)
        long_factor = 0.5 ** (age / config.trend_long_half_life_ms)
        self.short = {item: weight * short_factor for item, weight in self.short.items()}
        self.long = {item: weight * long_factor for item, weight in self.long.items()}
        items, short, long = self.top
        self.top = (
            items,
            tuple(weight * short_factor for weight in short),
            tuple(weight * long_factor for weight in long),
        )
        self.ref = ts

    def snapshot(self) -> TrendSnapshot:
        return {
            "short": dict(self.short),
            "long": dict(self.long),
            "ref": self.ref,
            "top": [list(column) for column in self.top],
            "since_refresh": self.since_refresh,
        }

    @classmethod
    def restore(cls, snapshot: TrendSnapshot) -> TrendState:
        state = cls()
        state.short = dict(snapshot["short"])  # type: ignore[call-overload]
        state.long = dict(snapshot["long"])  # type: ignore[call-overload]
        state.ref = int(snapshot["ref"])  # type: ignore[call-overload]
        items, short, long = snapshot["top"]  # type: ignore[misc]
        state.top = (tuple(items), tuple(short), tuple(long))
        state.since_refresh = int(snapshot["since_refresh"])  # type: ignore[call-overload]
        return state
