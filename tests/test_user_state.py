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
    state = UserState("u")
    for n in range(500):
        step = state.on_event(Event("u", f"i{n % 50}", T0 + n * MINUTE, "view"), config)
        assert len(state.history) <= 5
        assert len(state.seen) <= 7
        assert len(step.items) <= 3 + 1, "the queried items and the event's own"
    assert state.version == 500
    assert list(state.seen)[-1] == "i49"


def test_queries_are_recent_distinct_items_and_the_window_item_comes_last() -> None:
    config = EngineConfig(query_recent=3)
    state = UserState("u")
    for n, item in enumerate(["a", "b", "a", "c"]):
        step = state.on_event(Event("u", item, T0 + n * MINUTE, "view"), config)
    assert [message.item_id for message in step.items] == ["b", "a", "c"]
    assert [entry[0] for entry in step.header.history] == ["b", "a", "c"]
    assert step.header.before == 2
    assert step.header.labels == ("c",)
    # Only the new item carries popularity; every queried item is linked to it.
    assert [message.weight for message in step.items] == [0.0, 0.0, 1.0]
    assert [link[0] for link in step.items[0].links] == ["c"]
    assert sorted(link[0] for link in step.items[2].links) == ["a", "b"]


def test_links_reach_link_recent_items_and_requests_query_recent_ones() -> None:
    config = EngineConfig(query_recent=4, link_recent=1)
    state = UserState("u")
    for n, item in enumerate("abcde"):
        step = state.on_event(Event("u", item, T0 + n * MINUTE, "view"), config)
    assert [message.item_id for message in step.items] == ["a", "b", "c", "d", "e"]
    assert [bool(message.links) for message in step.items] == [False, False, False, True, True]
    assert [link[0] for link in step.items[-1].links] == ["d"]
    # An event that asks nothing sends messages only where there is something to learn.
    step = state.on_event(
        Event("u", "f", T0 + 9 * MINUTE, "view"), config, train=False, serve=False
    )
    assert [message.item_id for message in step.items] == ["e", "f"]


def test_a_repeated_item_is_no_label() -> None:
    state = UserState("u")
    state.on_event(Event("u", "a", T0, "view"), EngineConfig())
    step = state.on_event(Event("u", "a", T0 + MINUTE, "view"), EngineConfig())
    assert step.header.labels == ()


def test_events_inside_a_window_only_learn_and_the_close_serves() -> None:
    config = EngineConfig(query_recent=3)
    state = UserState("u")
    first = state.on_event(Event("u", "a", T0, "view"), config, serve=False)
    assert first.header is not None and first.header.version is None, "trains, serves nothing"
    second = state.on_event(Event("u", "b", T0 + 1, "view"), config, train=False, serve=False)
    assert second.header is None
    assert [message.request for message in second.items] == [None, None]
    assert [link[0] for link in second.items[1].links] == ["a"], "learned all the same"
    served = state.serve(config)
    assert served.header is not None and served.header.version == 1
    assert served.header.labels == ()
    assert [message.item_id for message in served.items] == ["a", "b"]
    assert all(not message.links and not message.weight for message in served.items)
    assert served.header.request != first.header.request


def test_snapshot_restore_gives_identical_future_steps() -> None:
    config = EngineConfig(history_cap=4, seen_cap=6, query_recent=3)
    state = UserState("u")
    for n in range(20):
        state.on_event(
            Event("u", f"i{n % 9}", T0 + n * MINUTE, "view", category=f"c{n % 3}"), config
        )
    copy = UserState.restore(state.snapshot())
    later = [
        Event("u", f"i{n}", T0 + (30 + n) * MINUTE, "purchase", category="c1") for n in range(5)
    ]
    for event in later:
        assert copy.on_event(event, config) == state.on_event(event, config)
    assert copy.serve(config) == state.serve(config)


def test_category_profile_is_bounded_and_decays() -> None:
    config = EngineConfig(profile_cap=3, profile_half_life_ms=MINUTE)
    state = UserState("u")
    for n in range(10):
        state.on_event(Event("u", f"i{n}", T0 + n * MINUTE, "view", category=f"c{n}"), config)
    assert len(state.profile) <= 3
    step = state.on_event(Event("u", "z", T0 + 20 * MINUTE, "view"), config)
    assert dict(step.header.profile)["c9"] < 0.01
