"""The baselines: their updates, their lists, and the rules every one of them keeps."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import numpy as np
import pytest

from dataflows.evaluate import make_baselines
from operators.baselines import (
    BPR,
    ISGD,
    Covisitation,
    ItemIndex,
    Popularity,
    RiverBiasedMF,
    WindowPopularity,
    covisitation_grid,
    grown,
    top_k,
)
from operators.evaluation import prequential
from operators.events import FORGET_USER, Event

DAY = 86_400_000


def buy(user: str, item: str, ts: int = 1) -> Event:
    return Event(user, item, ts, "purchase")


def forget(user: str) -> Event:
    return Event(user, None, 2, FORGET_USER)


def learn_all(model: object, pairs: list[tuple[str, str]]) -> None:
    for ts, (user, item) in enumerate(pairs, 1):
        model.learn(buy(user, item, ts))  # type: ignore[attr-defined]


def test_top_k_orders_best_first_and_never_returns_excluded_positions() -> None:
    scores = np.array([0.3, 0.9, 0.1, 0.7, 0.5])
    assert top_k(scores, 3).tolist() == [1, 3, 4]
    assert top_k(scores, 3, exclude={1, 4}).tolist() == [3, 0, 2]
    assert top_k(scores, 10, exclude={0, 1}).tolist() == [3, 4, 2]
    assert top_k(scores, 2, exclude={0, 1, 2, 3, 4}).tolist() == []
    assert scores.tolist() == [0.3, 0.9, 0.1, 0.7, 0.5]  # the caller's scores are not touched


def test_grown_keeps_the_values_and_at_least_doubles() -> None:
    matrix = np.arange(4.0).reshape(2, 2)
    bigger = grown(matrix, 3, axes=(0, 1))
    assert bigger.shape == (4, 4)
    assert bigger[:2, :2].tolist() == matrix.tolist()
    assert bigger[2:].sum() == 0 and bigger[:, 2:].sum() == 0
    assert grown(matrix, 2) is matrix


def test_item_index_numbers_items_in_order_of_first_appearance() -> None:
    index = ItemIndex()
    assert [index.row(item) for item in ["b", "a", "b", "c"]] == [0, 1, 0, 2]
    assert index.ids == ["b", "a", "c"]
    assert index.get("z") is None


def test_popularity_counts_events() -> None:
    model = Popularity()
    learn_all(model, [("ann", "a"), ("bob", "a"), ("bob", "b"), ("cat", "c"), ("dan", "a")])
    assert model.counts.values.tolist() == [3.0, 1.0, 1.0]
    assert model.recommend("eve", 1) == ["a"]
    assert model.recommend("bob", 3) == ["c"]  # a and b were bought by bob


def test_decayed_popularity_halves_the_weight_of_an_event_per_half_life() -> None:
    model = Popularity(half_life_events=2)
    learn_all(model, [("ann", "old"), ("bob", "x"), ("cat", "new")])
    old, _, new = model.counts.values
    assert new / old == pytest.approx(2.0)
    assert model.name == "decayed_popularity"
    assert model.recommend("dan", 1) == ["new"]


def test_decayed_popularity_rescales_without_changing_the_ranking() -> None:
    model = Popularity(half_life_events=1)
    for ts in range(1, 1200):
        model.learn(buy("u", "a" if ts % 3 else "b", ts))
    values = model.counts.values
    assert np.isfinite(values).all()
    assert values.max() < 1e160
    assert model.recommend("v", 2) == ["a", "b"]


def test_window_popularity_counts_each_user_once_per_item() -> None:
    model = WindowPopularity(days=7)
    learn_all(model, [("ann", "a"), ("ann", "a"), ("ann", "a"), ("bob", "b"), ("cat", "b")])
    assert model.counts.values.tolist() == [1.0, 2.0]
    assert model.recommend("dan", 2) == ["b", "a"]


def test_window_popularity_forgets_what_left_the_window() -> None:
    model = WindowPopularity(days=2)
    for user in ["u1", "u2", "u3"]:
        model.learn(buy(user, "old", 0))
    for day, user in [(1, "u4"), (3, "u5")]:
        model.learn(buy(user, "new", day * DAY))
    # at day 3 the three buyers of old (day 0) and u4's new (day 1) are out of the window
    assert model.counts.values.tolist() == [0.0, 1.0]
    assert model.recommend("dan", 1) == ["new"]


def test_covisitation_counts_are_exact_on_a_tiny_stream() -> None:
    model = Covisitation(history=2)
    learn_all(
        model,
        [("ann", "a"), ("ann", "b"), ("ann", "c"), ("bob", "a"), ("bob", "c"), ("ann", "a")],
    )
    index = {item: model.items.get(item) for item in "abc"}
    counts = model.counts.matrix[:3, :3]

    def count(x: str, y: str) -> float:
        return float(counts[index[x], index[y]])

    # ann: b with a; c with a and b; bob: c with a; ann's a again with her last two (b, c),
    # her history being capped at 2 items.
    assert count("a", "b") == count("b", "a") == 2
    assert count("a", "c") == count("c", "a") == 3
    assert count("b", "c") == count("c", "b") == 1
    assert np.diag(counts).tolist() == [0, 0, 0]
    assert model.recent["ann"] == [index["c"], index["a"]]


def test_raw_covisitation_ranks_by_summed_covisits_then_fills_with_popularity() -> None:
    model = Covisitation(normalisation="raw", recency_half_life=None)
    learn_all(
        model,
        [
            *[("ann", "tea"), ("ann", "jam"), ("bob", "tea"), ("bob", "jam")],
            *[("cat", "tea"), ("cat", "cup"), ("cat", "mug"), ("hal", "cup")],
            *[("dan", "pot"), ("eve", "pot"), ("gus", "pot"), ("fay", "tea")],
        ],
    )
    # with tea: jam twice, cup and mug once (cup is more popular); pot, the most popular item,
    # never co-occurs with tea and only fills the list
    assert model.recommend("fay", 4) == ["jam", "cup", "mug", "pot"]
    assert model.recommend("nobody", 2) == ["tea", "pot"]


@pytest.mark.parametrize("normalisation", ["conditional", "cosine"])
def test_normalised_covisitation_beats_raw_counts_next_to_a_popular_item(
    normalisation: str,
) -> None:
    # Of the 100 buyers of pop, 20 bought a; all 5 buyers of rare bought b. Fay bought pop and
    # rare: raw counts offer a (20 co-visits against 5), normalised counts the specific b.
    stream = [(f"u{n}", "pop") for n in range(100)] + [(f"u{n}", "a") for n in range(20)]
    stream += [(f"v{n}", item) for n in range(5) for item in ("rare", "b")]
    grid = covisitation_grid(histories=(5,), half_lives=(None,), fill_weight=0.0)
    learn_all(grid[0], [*stream, ("fay", "pop"), ("fay", "rare")])
    models = {variant.normalisation: variant for variant in grid}
    assert models["raw"].recommend("fay", 1) == ["a"]
    assert models[normalisation].recommend("fay", 1) == ["b"]  # type: ignore[index]


def test_recency_weighting_follows_the_latest_visit() -> None:
    # a leads to b and c leads to d; ann bought a long ago and c in her latest visit.
    stream = [(f"u{n}", item) for n in range(10) for item in ("a", "b")]
    stream += [(f"v{n}", item) for n in range(8) for item in ("c", "d")]
    grid = covisitation_grid(
        histories=(10,), normalisations=("raw",), half_lives=(None, 1.0), content_weights=(0.0,)
    )
    for ts, (user, item) in enumerate([*stream, ("ann", "a"), ("ann", "c")], 1):
        grid[0].learn(buy(user, item, ts))
    flat, recent = grid
    assert flat.recommend("ann", 1) == ["b"]  # a's ten co-visits outweigh c's eight
    assert recent.recommend("ann", 1) == ["d"]  # but a is one visit older: half the weight


def test_a_basket_counts_as_one_visit_for_recency() -> None:
    model = Covisitation(history=10)
    for user, item, ts in [("ann", "a", 1), ("ann", "b", 2), ("ann", "c", 2), ("ann", "d", 2)]:
        model.learn(buy(user, item, ts))
    assert model.counts.visits_ago("ann").tolist() == [1, 0, 0, 0]


def test_grid_variants_share_their_counting_and_are_named_by_their_parameters() -> None:
    grid = covisitation_grid()
    assert len(grid) == 24 and len({variant.name for variant in grid}) == 24
    names = {variant.name for variant in grid}
    assert {"covisitation_w10_conditional_recency1", "covisitation_w30_raw_content1"} <= names
    event = buy("ann", "a")
    for variant in grid:
        variant.learn(event)  # the evaluator hands each variant the same event
    other = buy("ann", "b", 2)
    for variant in grid:
        variant.learn(other)
    assert grid[0].counts is not grid[-1].counts
    assert {id(variant.counts) for variant in grid} == {id(grid[0].counts), id(grid[-1].counts)}
    for counts in {id(variant.counts): variant.counts for variant in grid}.values():
        assert counts.matrix[0, 1] == counts.matrix[1, 0] == 1.0  # counted once, not 6 times
    assert grid[0].interactions.users.tolist() == [1.0, 1.0]


def test_the_content_term_lifts_items_of_the_users_categories() -> None:
    # No co-visit leads anywhere from ann's teas; coffee is the more popular, tea2 the one of
    # her category.
    events = [buy(f"u{n}", "coffee", n) for n in range(3)] + [buy("v", "tea2", 10)]
    events += [buy("ann", "tea1", 20), buy("ann", "tea3", 21)]
    categories = {"coffee": "coffee", "tea1": "tea", "tea2": "tea", "tea3": "tea"}
    grid = covisitation_grid(histories=(10,), normalisations=("raw",), half_lives=(None,))
    plain, content = grid
    assert content.name.endswith("_content1")
    for event in events:
        event = msgspec.structs.replace(event, category=categories[event.item_id])
        for variant in grid:
            variant.learn(event)
    assert plain.recommend("ann", 1) == ["coffee"]
    assert content.recommend("ann", 1) == ["tea2"]


def test_without_categories_the_content_variants_rank_as_the_others() -> None:
    grid = covisitation_grid(histories=(10,), half_lives=(1.0,))
    stream = [(f"u{n % 7}", f"i{(n * 5) % 11}") for n in range(60)]
    for ts, (user, item) in enumerate(stream, 1):
        for variant in grid:
            variant.learn(buy(user, item, ts))
    for plain, content in zip(grid[::2], grid[1::2], strict=True):
        assert [plain.recommend(f"u{n}", 5) for n in range(7)] == [
            content.recommend(f"u{n}", 5) for n in range(7)
        ]


def test_isgd_step_follows_the_paper() -> None:
    model = ISGD(factors=3, learning_rate=0.1, l2=0.01, seed=1)
    model.learn(buy("ann", "a"))
    p, q = model.factors.users["ann"].copy(), model.factors.items[0].copy()
    model.learn(buy("ann", "a", 2))
    error = 1.0 - p @ q
    p_new = p + 0.1 * (error * q - 0.01 * p)
    q_new = q + 0.1 * (error * p_new - 0.01 * q)
    assert model.factors.users["ann"] == pytest.approx(p_new)
    assert model.factors.items[0] == pytest.approx(q_new)


def test_isgd_moves_the_pair_towards_one_and_ranks_by_closeness_to_one() -> None:
    model = ISGD(seed=3)
    errors = []
    for ts in range(1, 60):
        model.learn(buy("ann", "a", ts))
        errors.append(abs(1.0 - model.factors.users["ann"] @ model.factors.items[0]))
    assert errors[-1] < 0.05 < errors[0]
    learn_all(model, [("bob", "a"), ("bob", "b"), ("cat", "c")])
    scores = model.factors.items[:3] @ model.factors.users["ann"]
    expected = [model.items.ids[row] for row in np.argsort(np.abs(1.0 - scores))]
    assert model.recommend("ann", 2) == [item for item in expected if item != "a"]
    assert model.recommend("nobody", 2) == []


def taste_stream() -> list[Event]:
    """Eight groups of 10 users, each buying its own 10 items in a shuffled order: the items
    are equally popular, so only a user's own taste tells which ones come next."""
    rng = np.random.default_rng(5)
    events = [
        (f"u{group}_{user}", f"i{group}_{item}")
        for group in range(8)
        for user in range(10)
        for item in rng.permutation(10)
    ]
    order = rng.permutation(len(events))
    return [buy(*events[position], ts) for ts, position in enumerate(order, 1)]


def test_bpr_learns_user_tastes_that_popularity_misses() -> None:
    reports = prequential(taste_stream(), [BPR(), WindowPopularity()], k=3)
    assert reports["bpr"].hr > 3 * reports["window_popularity"].hr


def covisitation_candidates(model: Covisitation) -> Callable[[str], list[str]]:
    return lambda user: model.recommend(user, 50)


def test_river_biasedmf_learns_positives_above_sampled_negatives() -> None:
    items = [f"i{n}" for n in range(20)]
    model = RiverBiasedMF(candidates=lambda user: items, negatives=3, seed=0)
    learn_all(model, [(f"u{n}", item) for n in range(20) for item in items])  # catalog known
    for ts in range(200):
        model.learn(buy("ann", "i0", ts))
    river = model.model
    assert river.predict_one("ann", "i0") > max(river.predict_one("ann", i) for i in items[1:])


def test_river_biasedmf_ranks_only_the_candidates_it_is_given() -> None:
    covisitation = Covisitation()
    model = RiverBiasedMF(candidates=covisitation_candidates(covisitation))
    for event in [buy("ann", "a", 1), buy("ann", "b", 2), buy("bob", "a", 3), buy("cat", "c", 4)]:
        covisitation.learn(event)
        model.learn(event)
    assert sorted(model.recommend("bob", 5)) == ["b", "c"]
    only_c = RiverBiasedMF(candidates=lambda user: ["c", "zzz", "a"])
    learn_all(only_c, [("ann", "a"), ("cat", "c")])
    assert only_c.recommend("ann", 5) == ["c"]  # unknown zzz and seen a are left out


def test_river_biasedmf_negatives_are_items_the_user_never_touched() -> None:
    model = RiverBiasedMF(candidates=lambda user: [], negatives=5, seed=2)
    learned: list[tuple[str, str, float]] = []
    original = model.model.learn_one

    def spy(user: str, item: str, y: float) -> None:
        learned.append((user, item, y))
        original(user, item, y)

    model.model.learn_one = spy  # type: ignore[method-assign]
    learn_all(model, [("bob", "x"), ("bob", "y"), ("bob", "z"), ("ann", "x"), ("ann", "y")])
    touched: dict[str, set[str]] = {}
    negatives = []
    for user, item, y in learned:
        if y == 1.0:
            touched.setdefault(user, set()).add(item)
        else:
            assert item not in touched[user]
            negatives.append((user, item))
    # bob never had an untouched item to sample; ann had y and z, then only z
    assert len(negatives) == 10
    assert set(negatives[:5]) <= {("ann", "y"), ("ann", "z")}
    assert negatives[5:] == [("ann", "z")] * 5


def trained_baselines(events: list[Event]) -> dict[str, object]:
    """Every baseline after ``events`` (River ranks co-visitation's candidates)."""
    covisitation = Covisitation()
    models = [
        Popularity(),
        Popularity(half_life_events=10),
        WindowPopularity(),
        covisitation,
        BPR(),
        ISGD(),
        RiverBiasedMF(candidates=covisitation_candidates(covisitation)),
    ]
    for event in events:
        for model in models:
            model.learn(event)
    return {model.name.split("_w")[0]: model for model in models}


NAMES = [
    "popularity",
    "decayed_popularity",
    "window_popularity",
    "covisitation",
    "bpr",
    "isgd",
    "river_biasedmf",
]
STREAM = [buy(f"u{n % 7}", f"i{(n * 5) % 31}", n) for n in range(1, 121)]


@pytest.mark.parametrize("name", NAMES)
def test_every_baseline_leaves_out_seen_items(name: str) -> None:
    model = trained_baselines(STREAM)[name]
    for user in {event.user_id for event in STREAM}:
        seen = {event.item_id for event in STREAM if event.user_id == user}
        ranked = model.recommend(user, 10)  # type: ignore[attr-defined]
        assert ranked, f"{user} got no list"
        assert not seen & set(ranked)
        assert len(ranked) == len(set(ranked)) <= 10


@pytest.mark.parametrize("name", NAMES)
def test_every_baseline_forgets_what_the_user_did(name: str) -> None:
    events = [buy("ann", "a", 1), buy("bob", "b", 2), buy("bob", "c", 3), forget("ann")]
    model = trained_baselines(events)[name]
    assert "ann" not in model.seen  # type: ignore[attr-defined]
    ranked = model.recommend("ann", 3)  # type: ignore[attr-defined]
    # ann is a stranger again: a is no longer left out; ISGD has no factors for a stranger
    assert ranked == [] if name == "isgd" else "a" in ranked


def test_forgetting_drops_the_users_own_model_state() -> None:
    events = [buy("ann", "a", 1), buy("ann", "b", 2), forget("ann")]
    models = trained_baselines(events)
    assert "ann" not in models["covisitation"].recent  # type: ignore[attr-defined]
    assert "ann" not in models["covisitation"].counts.stamps  # type: ignore[attr-defined]
    assert "ann" not in models["isgd"].factors.users  # type: ignore[attr-defined]
    assert "ann" not in models["bpr"].factors.users  # type: ignore[attr-defined]
    river = models["river_biasedmf"].model  # type: ignore[attr-defined]
    assert "ann" not in river.u_latents and "ann" not in river.u_biases
    assert "a" in river.i_latents  # what items learned stays


def test_covisitation_refuses_a_catalog_beyond_its_dense_matrix() -> None:
    model = Covisitation(max_items=2)
    learn_all(model, [("ann", "a"), ("ann", "b")])
    with pytest.raises(ValueError, match="at most 2 items"):
        model.learn(buy("ann", "c"))


def test_every_baseline_answers_before_it_has_seen_any_event() -> None:
    # A warm-started evaluation asks for a pretrained user's list before the first event.
    for model in make_baselines():
        assert model.recommend("ann", 10) == [], model.name
