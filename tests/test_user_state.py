"""The user step: bounded history, the messages each event sends, and rating weights."""

from __future__ import annotations

from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.engine_config import EngineConfig
from operators.events import Event
from operators.item_model import Observation
from operators.messages import Label, ReplicaMessage, Serve, Train
from operators.user_state import UserState

T0 = 1_700_000_000_000
MINUTE = 60_000
M = TypeVar("M")


def feed(
    state: UserState, items: str, config: EngineConfig, kind: str = "view"
) -> list[ReplicaMessage]:
    """One event per character of ``items``, a minute apart; the last event's messages."""
    messages: list[ReplicaMessage] = []
    for n, item in enumerate(items):
        messages = state.on_event(Event(state.user_id, item, T0 + n * MINUTE, kind), config)
    return messages


def only(messages: list[ReplicaMessage], kind: type[M]) -> M:
    (found,) = [message for message in messages if isinstance(message, kind)]
    return found


def test_history_and_seen_stay_bounded_under_a_long_stream() -> None:
    config = EngineConfig(history_cap=5, seen_cap=7, query_recent=3, link_recent=2)
    state = UserState("u")
    for n in range(500):
        messages = state.on_event(Event("u", f"i{n % 50}", T0 + n * MINUTE, "view"), config)
        assert len(state.history) <= 5
        assert len(state.seen) <= 7
        assert len(only(messages, Train).history) <= 3
        assert len(only(messages, Observation).recent) <= 2
    assert state.version == 500
    assert list(state.seen)[-1] == "i49"


def test_an_event_trains_on_the_history_before_it_and_links_to_distinct_recent_items() -> None:
    config = EngineConfig(query_recent=3, link_recent=3)
    train, observation, serve = feed(UserState("u"), "abac", config)
    assert isinstance(train, Train) and isinstance(observation, Observation)
    assert isinstance(serve, Serve)
    # "a" came back after "b": it is the newer of the two, and listed once.
    assert [entry[0] for entry in train.history] == ["b", "a"]
    assert train.label == "c" and sorted(train.seen) == ["a", "b"]
    assert [entry[0] for entry in observation.recent] == ["b", "a"]
    assert observation.item_id == "c" and observation.first
    assert [entry[0] for entry in serve.history] == ["b", "a", "c"]
    assert sorted(serve.seen) == ["a", "b", "c"]


def test_links_reach_only_the_link_recent_newest_items() -> None:
    config = EngineConfig(query_recent=4, link_recent=1)
    messages = feed(UserState("u"), "abcde", config)
    assert [entry[0] for entry in only(messages, Observation).recent] == ["d"]
    assert [entry[0] for entry in only(messages, Train).history] == ["a", "b", "c", "d"]


def test_a_repeated_item_is_no_label_and_no_first() -> None:
    config = EngineConfig()
    state = UserState("u")
    state.on_event(Event("u", "a", T0, "view"), config, serve=False)
    again = state.on_event(Event("u", "a", T0 + 1, "view"), config, train=False, serve=False)
    assert [type(message) for message in again] == [Observation]
    assert not only(again, Observation).first
    train = state.on_event(Event("u", "a", T0 + MINUTE, "view"), config)[0]
    assert isinstance(train, Train) and train.label is None


def test_inside_a_window_a_new_item_labels_the_open_list_and_the_close_serves() -> None:
    config = EngineConfig()
    state = UserState("u")
    opened = state.on_event(Event("u", "a", T0, "view"), config, serve=False)
    assert [type(message) for message in opened] == [Train, Observation]
    inside = state.on_event(Event("u", "b", T0 + 1, "view"), config, train=False, serve=False)
    assert inside[0] == Label("u", "b")
    assert [entry[0] for entry in only(inside, Observation).recent] == ["a"], "learned all same"
    assert state.version == 0, "nothing served yet"
    served = state.serve(config)
    assert (served.version, served.as_of) == (1, T0 + 1)
    assert [entry[0] for entry in served.history] == ["a", "b"]


def test_a_rating_weighs_by_how_it_compares_with_the_users_own_mean() -> None:
    config = EngineConfig()

    def rating_weight(earlier: list[float], value: float) -> float:
        state = UserState("u")
        for n, rating in enumerate(earlier):
            state.on_event(Event("u", f"old{n}", T0 + n, "rating", value=rating), config)
        messages = state.on_event(Event("u", "new", T0 + MINUTE, "rating", value=value), config)
        return only(messages, Observation).weight

    base = config.type_weights["rating"]
    assert rating_weight([], 1.0) == rating_weight([], 5.0) == base, "no mean yet: type weight"
    # The same 3 stars: praise from a harsh rater, a complaint from a generous one.
    assert rating_weight([1.0, 2.0], 3.0) > base > rating_weight([5.0, 4.0], 3.0)
    assert rating_weight([4.0, 4.0], 2.0) < rating_weight([4.0, 4.0], 5.0)


def test_snapshot_restore_gives_identical_future_messages() -> None:
    config = EngineConfig(history_cap=4, seen_cap=6, query_recent=3)
    state = UserState("u")
    for n in range(20):
        state.on_event(Event("u", f"i{n % 9}", T0 + n * MINUTE, "rating", value=n % 5), config)
    copy = UserState.restore(state.snapshot())
    for n in range(5):
        event = Event("u", f"i{n}", T0 + (30 + n) * MINUTE, "rating", value=n)
        assert copy.on_event(event, config) == state.on_event(event, config)
    assert copy.serve(config) == state.serve(config)


@settings(max_examples=200, deadline=None)
@given(
    history_cap=st.integers(1, 6),
    seen_cap=st.integers(0, 8),
    picks=st.lists(st.integers(0, 9), min_size=1, max_size=60),
)
def test_history_and_seen_are_the_newest_distinct_items_under_any_caps(
    history_cap: int, seen_cap: int, picks: list[int]
) -> None:
    """History and seen set, kept as tails of one list, equal what each cap alone keeps: the
    newest distinct items with their latest event; a snapshot restores the same state."""
    config = EngineConfig(history_cap=history_cap, seen_cap=seen_cap, query_recent=history_cap)
    state = UserState("u")
    latest: dict[str, tuple[str, int, float]] = {}
    for n, pick in enumerate(picks):
        event = Event("u", f"i{pick}", T0 + n, "view")
        first = f"i{pick}" not in list(latest)[max(0, len(latest) - seen_cap) :]
        assert only(state.on_event(event, config), Observation).first == first
        latest.pop(f"i{pick}", None)
        latest[f"i{pick}"] = (f"i{pick}", T0 + n, config.type_weights["view"])
        entries = list(latest.values())
        assert state.history == tuple(entries[-history_cap:])
        assert state.seen == tuple(list(latest)[max(0, len(latest) - seen_cap) :])
        assert UserState.restore(state.snapshot()).snapshot() == state.snapshot()


def test_a_snapshot_whose_history_is_not_a_tail_of_its_seen_items_is_refused() -> None:
    entry = ("a", T0, 1.0)
    with pytest.raises(ValueError, match="not a tail"):
        UserState.restore(("u", (entry,), ("a", "b"), 0, 0.0, 0, T0))
