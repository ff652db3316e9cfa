from __future__ import annotations

import doctest

from operators import user_state
from operators.engine_config import EngineConfig
from operators.events import Event
from operators.user_state import UserState

T0 = 1_700_000_000_000
MINUTE = 60_000


def test_doctest() -> None:
    assert doctest.testmod(user_state, optionflags=doctest.ELLIPSIS).failed == 0


def test_history_and_seen_stay_bounded_under_a_long_stream() -> None:
    config = EngineConfig(history_cap=5, seen_cap=7, query_recent=3)
    state = UserState()
    for n in range(500):
        step = state.on_events([Event("u", f"i{n % 50}", T0 + n * MINUTE, "view")], config)
        assert len(state.history) <= 5
        assert len(state.seen) <= 7
        assert len(step.items) <= 3
    assert state.version == 500
    assert list(state.seen)[-1] == "i49"


def test_queries_are_recent_distinct_items_and_the_window_item_comes_last() -> None:
    config = EngineConfig(query_recent=3)
    state = UserState()
    for n, item in enumerate(["a", "b", "a", "c"]):
        step = state.on_events([Event("u", item, T0 + n * MINUTE, "view")], config)
    assert [message.item_id for message in step.items] == ["b", "a", "c"]
    assert [entry[0] for entry in step.header.history] == ["b", "a", "c"]
    assert step.header.before == 2
    assert step.header.labels == ("c",)
    # Only the new item carries popularity; every queried item is linked to it.
    assert [message.weight for message in step.items] == [0.0, 0.0, 1.0]
    assert [link[0] for link in step.items[0].links] == ["c"]
    assert sorted(link[0] for link in step.items[2].links) == ["a", "b"]


def test_a_repeated_item_is_no_label() -> None:
    state = UserState()
    state.on_events([Event("u", "a", T0, "view")], EngineConfig())
    step = state.on_events([Event("u", "a", T0 + MINUTE, "view")], EngineConfig())
    assert step.header.labels == ()


def test_items_of_the_same_basket_are_not_training_history() -> None:
    config = EngineConfig()
    state = UserState()
    state.on_events([Event("u", "old", T0, "purchase")], config)
    state.on_events([Event("u", "x", T0 + MINUTE, "purchase")], config)
    step = state.on_events([Event("u", "y", T0 + MINUTE, "purchase")], config)
    assert [entry[0] for entry in step.header.history] == ["old", "x", "y"]
    assert step.header.before == 1


def test_snapshot_restore_gives_identical_future_steps() -> None:
    config = EngineConfig(history_cap=4, seen_cap=6, query_recent=3)
    state = UserState()
    for n in range(20):
        state.on_events(
            [Event("u", f"i{n % 9}", T0 + n * MINUTE, "view", category=f"c{n % 3}")], config
        )
    copy = UserState.restore(state.snapshot())
    later = [
        Event("u", f"i{n}", T0 + (30 + n) * MINUTE, "purchase", category="c1") for n in range(5)
    ]
    for event in later:
        assert copy.on_events([event], config) == state.on_events([event], config)


def test_category_profile_is_bounded_and_decays() -> None:
    config = EngineConfig(profile_cap=3, profile_half_life_ms=MINUTE)
    state = UserState()
    for n in range(10):
        state.on_events([Event("u", f"i{n}", T0 + n * MINUTE, "view", category=f"c{n}")], config)
    assert len(state.profile) <= 3
    step = state.on_events([Event("u", "z", T0 + 20 * MINUTE, "view")], config)
    assert dict(step.header.profile)["c9"] < 0.01
