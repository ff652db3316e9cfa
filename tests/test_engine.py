from __future__ import annotations

import copy
import doctest
import random

from operators import engine
from operators.engine import Engine
from operators.engine_config import EngineConfig
from operators.events import Event

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


def test_doctest() -> None:
    assert doctest.testmod(engine, optionflags=doctest.ELLIPSIS).failed == 0


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
    weights = [state.ranker.weights.tolist() for state in model.shards]
    model.learn(Event("cat", "jam", T0 + 2 * MINUTE, "purchase"))
    assert [state.ranker.weights.tolist() for state in model.shards] == weights
    # Now "jam" and "cup" are linked to "tea": Bob's jam after his tea is a positive to learn.
    model.learn(Event("bob", "tea", T0 + 3 * MINUTE, "purchase"))
    assert sorted(model.recommend("bob", 10)) == ["cup", "jam"]
    model.learn(Event("bob", "jam", T0 + 4 * MINUTE, "purchase"))
    assert [state.ranker.weights.tolist() for state in model.shards] != weights


def test_freeze_stops_learning_but_keeps_serving() -> None:
    stream = _stream(900)
    model = Engine()
    for event in stream[:600]:
        model.learn(event)
    frozen = copy.deepcopy(model)
    frozen.freeze()
    items = {key: state.snapshot() for key, state in frozen.items.items()}
    weights = [state.ranker.weights.tolist() for state in frozen.shards]
    for event in stream[600:]:
        frozen.learn(event)
        assert frozen.recommend(event.user_id, 10)
    assert {key: state.snapshot() for key, state in frozen.items.items() if key in items} == items
    assert [state.ranker.weights.tolist() for state in frozen.shards] == weights


def test_forget_user_drops_the_user() -> None:
    model = Engine()
    for event in _stream(90):
        model.learn(event)
    user = next(iter(model.users))
    model.learn(Event(user, None, T0 + 10**9, "forget_user"))
    assert user not in model.users and model.recommend(user, 10) == []
    assert model.candidate_items(user) == []
