from __future__ import annotations

import copy
import random
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from operators.engine import Engine
from operators.engine_config import EngineConfig
from operators.events import Event
from operators.warm_start import WarmStart
from operators.windows import GateSettings

T0 = 1_700_000_000_000
MINUTE = 60_000


def _stream(count: int, seed: int = 0) -> list[Event]:
    """Users who buy from one of three item groups, a few items per basket."""
    rng = random.Random(seed)
    events = []
    ts = T0
    for _ in range(count // 3):
        user = f"u{rng.randrange(60)}"
        group = int(user[1:]) % 3
        ts += MINUTE
        for _ in range(3):
            events.append(Event(user, f"g{group}-{rng.randrange(100)}", ts, "purchase"))
    return events


def test_same_stream_gives_the_same_lists() -> None:
    first, second = Engine(), Engine()
    for event in _stream(600):
        first.learn(event)
        second.learn(event)
        assert first.latest(event.user_id) == second.latest(event.user_id)


def test_lists_exclude_seen_items_and_learn_the_groups() -> None:
    model = Engine(EngineConfig(k=5))
    seen: dict[str, set[str]] = {}
    for event in _stream(3_000):
        model.learn(event)
        seen.setdefault(event.user_id, set()).add(event.item_id)
        assert not seen[event.user_id] & set(model.recommend(event.user_id, 5))
    in_group = [
        item.startswith(f"g{int(user[1:]) % 3}")
        for user in seen
        for item in model.recommend(user, 5)
    ]
    assert sum(in_group) > 0.75 * len(in_group)


def test_training_list_excludes_the_events_own_effect() -> None:
    """An item's first purchase cannot teach the ranker: only the event itself links it."""
    model = Engine()
    model.learn(Event("cat", "tea", T0, "purchase"))
    model.learn(Event("cat", "cup", T0 + MINUTE, "purchase"))
    ranker = model.replica.ranker.snapshot()
    model.learn(Event("cat", "jam", T0 + 2 * MINUTE, "purchase"))
    assert model.replica.ranker.snapshot() == ranker
    # Now "jam" and "cup" are linked to "tea": Bob's jam after his tea is a positive to learn.
    model.learn(Event("bob", "tea", T0 + 3 * MINUTE, "purchase"))
    assert sorted(model.recommend("bob", 10)) == ["cup", "jam"]
    model.learn(Event("bob", "jam", T0 + 4 * MINUTE, "purchase"))
    assert model.replica.ranker.weights.tolist() != ranker[0]


def test_freeze_stops_learning_but_keeps_serving() -> None:
    stream = _stream(900)
    model = Engine()
    for event in stream[:600]:
        model.learn(event)
    frozen = copy.deepcopy(model)
    frozen.freeze()
    knowledge = frozen.replica.snapshot()
    for event in stream[600:]:
        frozen.learn(event)
        model.learn(event)
        assert frozen.recommend(event.user_id, 10)
    assert frozen.replica.snapshot() == knowledge
    assert model.replica.snapshot() != knowledge, "the same events teach a learning engine"


def test_a_saved_engine_continues_exactly_where_it_stopped(tmp_path: Path) -> None:
    # Stale neighbour and trending caches are part of the state: a restore must keep them.
    config = EngineConfig(dimensions=8)
    stream = _stream(900)
    model = Engine(config)
    for event in stream[:600]:
        model.learn(event)
    model.save(tmp_path)
    resumed = Engine(config, warm=WarmStart.read(tmp_path))
    for event in stream[600:]:
        model.learn(event)
        resumed.learn(event)
        assert resumed.latest(event.user_id) == model.latest(event.user_id)


def test_a_pretrained_user_holds_a_list_before_their_first_event(tmp_path: Path) -> None:
    config = EngineConfig(dimensions=8)
    stream = _stream(300)
    model = Engine(config)
    for event in stream:
        model.learn(event)
    model.save(tmp_path)
    resumed = Engine(config, warm=WarmStart.read(tmp_path))
    user = stream[-1].user_id
    assert resumed.recommend(user, 10) == []
    resumed.catch_up(user, stream[-1].ts + 1)
    assert resumed.recommend(user, 10) == model.recommend(user, 10)
    other = next(event.user_id for event in stream if event.user_id != user)
    resumed.learn(Event(other, None, stream[-1].ts + 2, "forget_user"))
    resumed.catch_up(other, stream[-1].ts + 3)
    assert resumed.recommend(other, 10) == []


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 7)), min_size=1, max_size=60),
    st.sampled_from([1, 50]),
)
def test_a_users_first_list_is_never_empty_while_an_unseen_item_is_known(
    rows: list[tuple[int, int]], trend_refresh: int
) -> None:
    """Cold start: similar and trending items fill the list of a user with one event."""
    model = Engine(EngineConfig(dimensions=4, trend_refresh=trend_refresh))
    for n, (user, item) in enumerate(rows):
        user_id = f"u{user}"
        first = user_id not in model.users
        model.learn(Event(user_id, f"i{item}", T0 + n * MINUTE, "view"))
        if first and set(model.replica.items.rows) - {f"i{item}"}:
            assert model.recommend(user_id, 10), f"{user_id}'s first list is empty"


def test_forget_user_drops_the_user() -> None:
    model = Engine()
    for event in _stream(90):
        model.learn(event)
    user = next(iter(model.users))
    model.learn(Event(user, None, T0 + 10**9, "forget_user"))
    assert user not in model.users and model.recommend(user, 10) == []
    assert model.candidate_items(user) == []


def test_an_idle_user_is_served_again_from_what_was_learned_since_then_expires() -> None:
    model = Engine(EngineConfig(k=1, dimensions=4), GateSettings(length_ms=60_000))
    model.learn(Event("ann", "tea", T0, "purchase"))
    model.on_idle("ann")
    first = model.latest("ann")
    assert first is not None and first.version == 1 and first.items == []
    for user in ("bob", "cyd"):
        model.learn(Event(user, "tea", T0 + 60_000, "purchase"))
        model.learn(Event(user, "jam", T0 + 60_000, "purchase"))
    model.on_idle("ann")
    refreshed = model.latest("ann")
    assert refreshed is not None and refreshed.version == 2
    assert model.recommend("ann", 1) == ["jam"], "learned while she was away"
    model.expire("ann")
    assert "ann" not in model.users and model.recommend("ann", 1) == []
    model.learn(Event("ann", "cup", T0 + 10**9, "purchase"))
    assert model.users["ann"].version == 0, "back after expiry: a new user"
