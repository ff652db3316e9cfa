from __future__ import annotations

import doctest

from operators import item_state, trend
from operators.engine_config import EngineConfig
from operators.item_state import ItemState
from operators.messages import ItemMessage, TrendMessage
from operators.trend import TrendState

DAY = 86_400_000


def test_doctests() -> None:
    assert doctest.testmod(item_state, optionflags=doctest.ELLIPSIS).failed == 0
    assert doctest.testmod(trend, optionflags=doctest.ELLIPSIS).failed == 0


def test_reply_reflects_the_state_before_the_message() -> None:
    item = ItemState()
    config = EngineConfig()
    part = item.on_message(ItemMessage("a", 0, ("u", 1), 0, (("b", 1.0, None),), 5.0), config)
    assert part is not None and part.items == () and part.popularity == 0.0
    part = item.on_message(ItemMessage("a", 0, ("u", 2), 0), config)
    assert part is not None and part.items == ("b",) and part.popularity == 5.0


def test_neighbours_stay_bounded_and_keep_the_strongest() -> None:
    config = EngineConfig(neighbours=5)
    item = ItemState()
    for n in range(1_000):
        links = ((f"n{n}", 1.0, None), ("strong", 10.0, None))
        item.apply(ItemMessage("a", n * 1000, None, 0, links), config)
        assert len(item.links) <= 10
    assert "strong" in item.links


def test_links_decay_with_the_half_life_and_survive_rebasing() -> None:
    config = EngineConfig(link_half_life_ms=DAY)
    item = ItemState()
    item.apply(ItemMessage("a", 0, None, 0, (("b", 8.0, None),)), config)
    part = item.reply(ItemMessage("a", 3 * DAY, ("u", 1), 0), config)
    assert part.weights[0] * part.scale == 1.0
    # Far in the future the stored weights are rebased instead of overflowing.
    item.apply(ItemMessage("a", 100 * DAY, None, 0, (("c", 1.0, None),)), config)
    part = item.reply(ItemMessage("a", 100 * DAY, ("u", 2), 0), config)
    weights = dict(zip(part.items, (w * part.scale for w in part.weights), strict=True))
    assert weights["c"] == 1.0 and weights["b"] < 1e-20


def test_item_snapshot_restore_round_trip() -> None:
    config = EngineConfig(neighbours=3)
    item = ItemState()
    for n in range(20):
        item.apply(ItemMessage("a", n * DAY, None, 0, ((f"n{n % 7}", 1.0 + n, "c"),), 1.0), config)
    copy = ItemState.restore(item.snapshot())
    for n in range(5):
        message = ItemMessage("a", (30 + n) * DAY, ("u", n), 0, ((f"m{n}", 2.0, None),), 1.0)
        assert copy.on_message(message, config) == item.on_message(message, config)


def test_trend_top_list_follows_short_term_popularity_and_stays_bounded() -> None:
    config = EngineConfig(trend_capacity=10, trend_top=3, trend_refresh=1)
    state = TrendState()
    for n in range(200):
        state.apply(TrendMessage(n * 1000, None, 0, ((f"i{n}", 1.0), ("hot", 1.0))), config)
        assert len(state.long) <= 20
    part = state.reply(TrendMessage(200_000, ("u", 1), 0))
    assert part.items[0] == "hot" and len(part.items) == 3
    copy = TrendState.restore(state.snapshot())
    message = TrendMessage(300_000, ("u", 2), 0, (("new", 50.0),))
    assert copy.on_message(message, config) == state.on_message(message, config)
    assert copy.snapshot() == state.snapshot()
