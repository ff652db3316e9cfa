"""The ranker and the model replica: listwise learning, test-then-train, because, snapshots."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np

from operators.candidates import gather
from operators.engine_config import EngineConfig
from operators.features import CATEGORY, FEATURES, FIXED_WEIGHTS, feature_matrix
from operators.item_model import Observation
from operators.messages import ForgetUser, Label, Recommendation, Serve, Tombstone, Train
from operators.ranking import _V, HIDDEN, Ranker, _gradient
from operators.replica import ModelReplica, _half_bits

MINUTE = 60_000
CONFIG = EngineConfig(dimensions=4, k=5)


def random_lists(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(12, len(FEATURES))) for _ in range(count)]


def test_the_weight_of_the_predictive_feature_grows_against_the_others() -> None:
    ranker = Ranker(EngineConfig(learning_rate=0.1))
    signal = FEATURES.index("popularity_long")
    start = ranker.weights.copy()
    for matrix in random_lists(200):
        ranker.learn(matrix, int(matrix[:, signal].argmax()))
    gained = ranker.weights - start
    assert gained[signal] > 0.5
    assert gained[signal] > np.abs(np.delete(gained, signal)).max() * 3


def test_a_choice_among_identical_candidates_teaches_nothing() -> None:
    """Listwise learning is calibrated: picking one of equals moves no parameter (a fresh
    ranker, as Adam's momentum would carry earlier steps on)."""
    ranker = Ranker(EngineConfig(learning_rate=0.1))
    start = ranker.parameters.copy()
    same = np.tile(np.linspace(0.0, 1.0, len(FEATURES)), (3, 1))
    for chosen in range(9):
        ranker.learn(same, chosen % 3)
    assert np.allclose(ranker.parameters, start)
    ranker.learn(random_lists(1)[0], 0)
    assert not np.allclose(ranker.parameters, start)


def test_the_fixed_ranker_keeps_the_prior_but_standardises_like_the_learned_one() -> None:
    fixed, learned = Ranker(EngineConfig(ranker="fixed")), Ranker(EngineConfig())
    for matrix in random_lists(20):
        fixed.learn(matrix, 0)
        learned.learn(matrix, 0)
    assert fixed.weights.tolist() == [FIXED_WEIGHTS[name] for name in FEATURES]
    assert learned.weights.tolist() != fixed.weights.tolist()
    assert np.allclose(fixed.mean, learned.mean) and np.allclose(fixed.scale, learned.scale)


def test_ranker_snapshot_restore_continues_identically() -> None:
    lists = random_lists(40)
    ranker = Ranker(CONFIG)
    for matrix in lists[:20]:
        ranker.learn(matrix, 1)
    copy_ = Ranker.restore(ranker.snapshot(), CONFIG)
    for matrix in lists[20:]:
        ranker.learn(matrix, 2)
        copy_.learn(matrix, 2)
        assert np.array_equal(copy_.scores(matrix), ranker.scores(matrix))


def observe(target: ModelReplica, item: str, minute: int, *recent: str) -> None:
    previous = tuple((other, (minute - 1) * MINUTE, 1.0) for other in recent)
    target.on_message(Observation(item, minute * MINUTE, 1.0, True, previous))


def shop() -> ModelReplica:
    """Tea is bought with jam, cup and pot; cup is also bought with mug; bread stands alone."""
    shop_replica = ModelReplica(CONFIG)
    minute = 0
    for basket in (["tea", "jam"], ["tea", "cup"], ["tea", "pot"], ["cup", "mug"], ["bread"]):
        for position, item in enumerate(basket):
            minute += 1
            observe(shop_replica, item, minute, *basket[:position])
    return shop_replica


def history(*items: str) -> tuple[tuple[str, int, float], ...]:
    return tuple((item, 100 * MINUTE + n, 1.0) for n, item in enumerate(items))


def test_train_learns_on_the_list_from_before_the_events_own_observation() -> None:
    served = shop()
    before = copy.deepcopy(served.items)
    train = Train("ann", history("tea"), ("tea",), "jam")
    served.on_message(train)
    observe(served, "jam", 101, "tea")
    # What the ranker learned on: the candidates the model knew before "jam" was observed.
    expected = Ranker(CONFIG)
    gathered = gather(before, train.history, train.seen, CONFIG)
    column = [before.ids[row] for row in gathered.rows].index("jam")
    kept = feature_matrix(before, gathered, CONFIG).astype(np.float16).astype(np.float64)
    expected.learn(kept, column)
    assert served.ranker.snapshot()[:4] == expected.snapshot()[:4]
    # A later new item of the same window trains on that same list.
    served.on_message(Label("ann", "cup"))
    column = [before.ids[row] for row in gathered.rows].index("cup")
    expected.learn(kept, column)
    assert served.ranker.snapshot()[:4] == expected.snapshot()[:4]


def test_a_label_outside_the_list_or_without_an_open_window_teaches_nothing() -> None:
    served = shop()
    start = served.ranker.snapshot()
    served.on_message(Label("ann", "jam"))  # no window open
    served.on_message(Train("ann", history("tea"), ("tea",), "bread-unknown"))
    served.on_message(Label("ann", "tea"))  # seen, so not a candidate
    assert served.ranker.snapshot() == start


def test_the_next_window_trains_on_the_list_served_and_forget_drops_it_with_a_tombstone() -> None:
    served = shop()
    recommendation = served.on_message(Serve("ann", history("tea"), ("tea",), 1, 7))
    assert isinstance(recommendation, Recommendation)
    listed = [served.items.rows[item] for item, _, _ in recommendation.items]
    kept = served.open["ann"]
    assert set(listed) <= set(kept.rows.tolist()), "the served list is what is kept"
    # The next window trains on that list, even when its Train carries another history: the
    # list the user held is the test of test-then-train.
    start = served.ranker.snapshot()
    served.on_message(Train("ann", history("bread"), ("bread",), "jam"))
    assert served.open["ann"] is kept
    assert served.ranker.snapshot() != start, "jam was on the served list: the ranker learned"
    served.on_message(Train("bob", history("tea"), ("tea",), None))
    assert served.on_message(ForgetUser("bob", 9)) == Tombstone("bob", 9)
    assert "bob" not in served.open


def test_open_training_lists_are_bounded() -> None:
    served = ModelReplica(EngineConfig(dimensions=4, open_lists=3))
    observe(served, "tea", 0)
    for user in range(10):
        served.on_message(Train(f"u{user}", history("tea"), ("tea",), None))
        assert len(served.open) <= 3
    assert list(served.open) == ["u7", "u8", "u9"], "the oldest are dropped first"


def test_lists_exclude_seen_items_and_say_why_each_item_is_there() -> None:
    served = shop()
    recommendation = served.on_message(
        Serve("ann", history("bread", "tea"), ("bread", "tea"), 1, 0)
    )
    assert isinstance(recommendation, Recommendation)
    listed = {item: because for item, _, because in recommendation.items}
    assert set(listed) == {"jam", "cup", "pot", "mug"}, "every unseen item, none seen"
    # A history item is named only for an item linked to it: mug is linked to cup alone.
    linked_to_tea = {"jam", "cup", "pot"}
    assert {item for item, because in listed.items() if because == "tea"} & linked_to_tea
    assert all(because in {"tea", "similar", "trending"} for because in listed.values())
    assert all(item in linked_to_tea for item, because in listed.items() if because == "tea")
    assert listed["mug"] in {"similar", "trending"}
    scores = [score for _, score, _ in recommendation.items]
    assert scores == sorted(scores, reverse=True)


def test_a_history_whose_events_weigh_nothing_still_gets_a_list_and_teaches_no_nan() -> None:
    # type_weights may be 0: such a history has no recency weight to share out.
    served = shop()
    weightless = tuple((item, ts, 0.0) for item, ts, _ in history("bread", "tea"))
    recommendation = served.on_message(Serve("ann", weightless, ("bread", "tea"), 1, 0))
    assert isinstance(recommendation, Recommendation)
    assert {item for item, _, _ in recommendation.items} == {"jam", "cup", "pot", "mug"}
    assert all(np.isfinite(score) for _, score, _ in recommendation.items)
    served.on_message(Train("ann", weightless, ("bread", "tea"), "jam"))
    assert np.isfinite(served.ranker.parameters).all()


def test_replica_snapshot_restore_serves_the_same_lists() -> None:
    config = EngineConfig(dimensions=4, k=5)
    served = ModelReplica(config)
    minute = 0
    for item, recent in [("tea", ()), ("jam", ("tea",)), ("cup", ("tea", "jam")), ("mug", ())]:
        minute += 1
        observe(served, item, minute, *recent)
    restored = ModelReplica.restore(served.snapshot(), config)
    for user, items in [("ann", ("tea",)), ("bob", ("mug", "cup")), ("cat", ("jam",))]:
        request = Serve(user, history(*items), items, 1, 0)
        assert restored.on_message(request) == served.on_message(request)
        observe(served, f"new-{user}", minute + 1, *items)
        observe(restored, f"new-{user}", minute + 1, *items)


def test_an_item_of_the_users_category_with_no_link_comes_through_content() -> None:
    """Kvass was never bought with anything and is not trending: only its category, the
    category of the user's tea, brings it to the list."""
    config = EngineConfig(dimensions=4, k=5, trend_top=1, similar=0)
    served = ModelReplica(config)
    events = [("tea", "drinks")] * 3 + [("bread", "bakery")] * 4 + [("kvass", "drinks")]
    for minute, (item, category) in enumerate(events):
        served.on_message(Observation(item, minute * MINUTE, 1.0, True, (), category))
    request = Serve("ann", history("tea"), ("tea",), 1, 0)
    served.ranker.parameters[FEATURES.index("category_share")] = 10.0
    recommendation, candidates = served.serve(request)
    assert [(item, because) for item, _, because in recommendation.items] == [
        ("kvass", "category"),
        ("bread", "trending"),
    ]
    kvass = list(candidates.rows).index(served.items.rows["kvass"])
    # Tea is the most popular drink, kvass the second: rank 1/2 of a category all of ann's.
    assert (candidates.category_share[kvass], candidates.category_rank[kvass]) == (1.0, 0.5)
    without = ModelReplica(dataclasses.replace(config, category_top=0))
    for minute, (item, category) in enumerate(events):
        without.on_message(Observation(item, minute * MINUTE, 1.0, True, (), category))
    assert [item for item, _, _ in without.serve(request)[0].items] == ["bread"]


def test_without_categories_the_content_features_are_zero_and_change_no_list() -> None:
    """However the ranker weighs content, a stream without categories gets the same lists and
    learns the same: the content source and features are inert there."""
    plain, weighted = shop(), shop()
    rng = np.random.default_rng(0)
    for name in CATEGORY:
        column = FEATURES.index(name)
        weighted.ranker.parameters[column] = rng.normal()
        start = len(FEATURES) + column * HIDDEN
        weighted.ranker.parameters[start : start + HIDDEN] = rng.normal(size=HIDDEN)
    content = [FEATURES.index(name) for name in CATEGORY]
    for user, items, label in [("ann", ("tea",), "jam"), ("bob", ("cup",), "mug")] * 3:
        request = Serve(user, history(*items), items, 1, 0)
        ours, candidates = plain.serve(request)
        assert weighted.serve(request)[0] == ours
        assert not feature_matrix(plain.items, candidates, CONFIG)[:, content].any()
        for replica in (plain, weighted):
            replica.on_message(Train(user, history(*items), items, label))


def test_the_ranker_gradient_matches_finite_differences() -> None:
    ranker = Ranker(CONFIG)
    ranker.parameters[_V.start :] = np.random.default_rng(1).normal(0, 0.5, HIDDEN)
    features = random_lists(1, seed=2)[0]
    ranker.learn(features, 0)  # running statistics, so that standardising is not the identity
    standardised, hidden = ranker.forward(features)
    gradient = _gradient(standardised, hidden, ranker.parameters, 3)

    def loss(parameters: np.ndarray) -> float:
        probe = copy.deepcopy(ranker)
        probe.parameters = parameters
        scores = probe.scores(features)
        return float(np.log(np.exp(scores - scores.max()).sum()) - (scores[3] - scores.max()))

    step = 1e-4
    for index in np.random.default_rng(3).choice(len(ranker.parameters), 40, replace=False):
        up, down = ranker.parameters.copy(), ranker.parameters.copy()
        up[index] += step
        down[index] -= step
        numeric = (loss(up) - loss(down)) / (2 * step)
        # float32 activations: a few parts in 1e4 of the gradient's scale.
        assert abs(numeric - gradient[index]) < 1e-3 * max(1.0, abs(numeric)), index


def test_kept_features_round_to_half_precision_exactly_as_numpy_does() -> None:
    rng = np.random.default_rng(0)
    halves = rng.integers(0, 0x7C00, 20_000, dtype=np.uint16).view(np.float16)
    with np.errstate(over="ignore"):  # the largest half's successor is infinite
        following = np.nextafter(halves, np.float16(np.inf)).astype(float)
    midpoints = (halves.astype(float) + following) / 2  # the ties, and a step either side
    values = np.concatenate(
        [
            midpoints,
            np.nextafter(midpoints, 0.0),
            np.nextafter(midpoints, np.inf),
            rng.normal(size=20_000) * 10.0 ** rng.integers(-9, 7, 20_000),
            rng.integers(0, 2**64, 20_000, dtype=np.uint64).view(np.float64),  # NaNs too
            [0.0, -0.0, np.inf, -np.inf, np.nan, 65504.0, 65520.0, 2.0**-25, 2.0**-24, 1e300],
        ]
    )
    matrix = np.ascontiguousarray(np.resize(values, (len(values) // 20, 20)))
    with np.errstate(over="ignore"):
        expected = matrix.astype(np.float16).view(np.uint16)
    assert np.array_equal(_half_bits(matrix), expected)
