from __future__ import annotations

import doctest

import numpy as np

from operators import candidates, features, ranking
from operators.candidates import gather_candidates
from operators.engine_config import EngineConfig
from operators.features import FEATURES, FIXED_WEIGHTS, feature_matrix
from operators.messages import TREND_KEY, ForgetUser, RankHeader, RankPart, Tombstone
from operators.ranking import Ranker, RankState


def test_doctests() -> None:
    for module in (candidates, features, ranking):
        assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0


def test_a_positive_raises_the_score_of_its_feature_pattern() -> None:
    ranker = Ranker(EngineConfig(ranker="river", learning_rate=0.1))
    pattern = np.zeros(len(FEATURES))
    pattern[FEATURES.index("pop_long")] = 1.0
    other = np.zeros(len(FEATURES))
    other[FEATURES.index("co_sum")] = 1.0
    before = float(pattern @ ranker.weights - other @ ranker.weights)
    for _ in range(20):
        ranker.learn_list(np.stack([pattern, other]), np.array([0]))
    assert float(pattern @ ranker.weights - other @ ranker.weights) > before + 0.5


def test_a_positive_among_equals_leaves_their_weights_alone() -> None:
    """Listwise learning is calibrated: choosing one of identical candidates teaches nothing
    (pairs with a hard negative would push the shared features down)."""
    ranker = Ranker(EngineConfig(ranker="river", learning_rate=0.1))
    same = np.full(len(FEATURES), 0.5)
    start = ranker.weights.copy()
    for chosen in range(10):
        ranker.learn_list(np.stack([same, same, same]), np.array([chosen % 3]))
    assert np.allclose(ranker.weights, start)


def test_the_fixed_ranker_never_changes() -> None:
    ranker = Ranker(EngineConfig(ranker="fixed"))
    ranker.learn_list(np.stack([np.ones(len(FEATURES)), np.zeros(len(FEATURES))]), np.array([0]))
    assert ranker.weights.tolist() == [FIXED_WEIGHTS[name] for name in FEATURES]


def _request(version: int | None, number: int = 1) -> tuple[RankHeader, list[RankPart]]:
    """A request that trains (label "b") and, with a ``version``, serves."""
    request = ("u1", number)
    header = RankHeader(
        request,
        0,
        10,
        (("a", 5, 5.0, None), ("b", 10, 5.0, None)),
        before=1,
        labels=("b",),
        seen=frozenset({"a", "b"}),
        parts=3,
        version=version,
    )
    parts = [
        RankPart(request, 0, "a", ("b", "c", "x"), (3.0, 1.0, 0.5)),
        RankPart(request, 0, "b", ("c", "e"), (4.0, 1.0)),
        RankPart(request, 0, TREND_KEY, ("d",), (1.0,), long_weights=(1.0,)),
    ]
    return header, parts


def test_parts_may_arrive_in_any_order_and_the_list_excludes_seen_items() -> None:
    config = EngineConfig(k=10)
    header, parts = _request(1)
    lists = []
    for order in ([header, *parts], [*reversed(parts), header]):
        state = RankState(config)
        outputs = [state.on_message(message, config) for message in order]
        assert outputs[:-1] == [None] * (len(order) - 1)
        assert state.is_idle()
        lists.append(outputs[-1])
    assert lists[0] == lists[1]
    assert {item for item, _ in lists[0].items} == {"c", "d", "e", "x"}


def test_forget_drops_pending_requests_and_answers_a_tombstone() -> None:
    config = EngineConfig()
    state = RankState(config)
    header, _ = _request(1)
    state.on_message(header, config)
    assert state.on_message(ForgetUser("u1", 0, 99), config) == Tombstone("u1", 99)
    assert state.is_idle()


def test_learning_uses_the_pre_window_list_and_restore_continues_identically() -> None:
    config = EngineConfig()
    state = RankState(config)
    header, parts = _request(1)
    state.rank(header, parts, config)

    # The training list is the one the history before the event ("a", row 0) gave: a's
    # neighbours b, c, x and the trending d, with features from row 0 only. "e", which only the
    # event's own item proposes, is no part of it.
    def learned_on(rows: int, listed: list[str]) -> list[float]:
        gathered = gather_candidates(header, parts, config)
        matrix = feature_matrix(header, gathered, rows, config.recency_half_life_ms)
        index = [gathered.items.index(item) for item in listed]
        ranker = Ranker(config)
        ranker.learn_list(matrix[index], np.array([listed.index("b")]))
        return ranker.weights.tolist()

    assert state.ranker.weights.tolist() == learned_on(1, ["b", "c", "x", "d"])
    assert state.ranker.weights.tolist() != learned_on(2, ["b", "c", "x", "d", "e"])

    copy = RankState.restore(state.snapshot(), config)
    for version in range(2, 6):
        header, parts = _request(version, number=version)
        ours, theirs = copy.rank(header, parts, config), state.rank(header, parts, config)
        assert ours is not None and theirs is not None
        assert ours.recommendation == theirs.recommendation
    assert copy.ranker.weights.tolist() == state.ranker.weights.tolist()


def test_a_request_without_version_trains_and_serves_nothing() -> None:
    config = EngineConfig()
    state = RankState(config)
    header, parts = _request(None)
    start = state.ranker.weights.copy()
    outputs = [state.on_message(message, config) for message in [header, *parts]]
    assert outputs == [None] * 4
    assert state.is_idle()
    assert not np.allclose(state.ranker.weights, start), "the label taught the ranker"
