"""The item model: links, distinct-user popularity, decay, expiry, snapshots, and embeddings
that learn."""

from __future__ import annotations

import random

import numpy as np
import pytest

from operators.candidates import gather
from operators.engine_config import EngineConfig
from operators.item_model import ItemModel, Observation

DAY = 86_400_000
MINUTE = 60_000


def link_weights(model: ItemModel, item: str) -> dict[str, float]:
    ids = model.ids
    return {str(ids[other]): weight for other, weight in model.links_of(model.rows[item]).items()}


def test_an_event_links_its_item_both_ways_weighted_by_the_weaker_event() -> None:
    model = ItemModel(EngineConfig(dimensions=4))
    model.observe(Observation("tea", 0, 5.0, True, ()))
    model.observe(Observation("cup", 0, 1.0, True, ()))
    model.observe(Observation("jam", 0, 3.0, True, (("tea", 0, 5.0), ("cup", 0, 1.0))))
    assert link_weights(model, "jam") == {"tea": 3.0, "cup": 1.0}
    assert link_weights(model, "tea") == {"jam": 3.0}
    assert link_weights(model, "cup") == {"jam": 1.0}
    assert model.mass[model.rows["jam"]] == 4.0


def test_links_stay_bounded_and_keep_the_strongest() -> None:
    config = EngineConfig(dimensions=4, neighbours=5)
    model = ItemModel(config)
    for n in range(1_000):
        recent = ((f"n{n}", n, 1.0), ("strong", n, 10.0))
        model.observe(Observation("hub", n, 10.0, True, recent))
        assert len(model.links_of(model.rows["hub"])) <= 2 * config.neighbours
    assert "strong" in link_weights(model, "hub")
    top = model.neighbours(model.rows["hub"])[0]
    assert model.ids[top[np.argmax(model.neighbours(model.rows["hub"])[1])]] == "strong"


def test_popularity_counts_each_user_once_per_item() -> None:
    model = ItemModel(EngineConfig(dimensions=4))
    for n in range(10):  # one fan, ten views
        model.observe(Observation("fad", n, 1.0, n == 0, ()))
    for n in range(3):  # three users, one view each
        model.observe(Observation("hit", n, 1.0, True, ()))
    model.flush()
    rows = model.rows
    assert model.short[rows["fad"]] > 0
    assert np.isclose(model.short[rows["hit"]], 3 * model.short[rows["fad"]])
    assert model.trending()[0] == rows["hit"]


def test_weights_decay_forward_with_their_half_life_and_survive_rebasing() -> None:
    config = EngineConfig(dimensions=4, link_half_life_ms=DAY, pop_short_half_life_ms=DAY)
    model = ItemModel(config)
    model.observe(Observation("old", 0, 8.0, True, ()))
    model.observe(Observation("b", 0, 8.0, True, (("old", 0, 8.0),)))
    model.observe(Observation("new", 3 * DAY, 1.0, True, ()))

    def short(item: str, ts: int) -> float:
        model.flush()
        return model.short[model.rows[item]] / model.decay(ts, config.pop_short_half_life_ms)

    assert np.isclose(short("old", 3 * DAY), 1.0) and np.isclose(short("new", 3 * DAY), 1.0)
    # Far later the stored weights are rebased instead of overflowing, and keep their ratio.
    far = 100 * DAY
    model.observe(Observation("c", far, 1.0, True, (("b", far, 1.0),)))
    model.flush()
    assert np.isfinite(model.short).all() and np.isfinite(model.mass).all()
    assert np.isclose(short("c", far), 1.0)
    assert np.isclose(short("new", far), 0.5**97)
    links = link_weights(model, "b")
    assert links["c"] / links["old"] > 1e20


def test_idle_items_are_swept_and_their_rows_reused() -> None:
    # Three events a day: a sweep at the end of every day.
    config = EngineConfig(dimensions=4, item_idle_ms=10 * DAY, sweep_every=3)
    model = ItemModel(config)
    capacities = []
    for day in range(200):
        # Each day brings two new items, linked together, and the staple everyone buys.
        ts = day * DAY
        model.observe(Observation("staple", ts, 1.0, True, ()))
        for number in range(2):
            item = f"d{day}-{number}"
            recent = (("staple", ts, 1.0),) if number == 0 else ((f"d{day}-0", ts, 1.0),)
            model.observe(Observation(item, ts + number, 1.0, True, recent))
        capacities.append(len(model.ids))
        assert len(model) <= 2 * 11 + 1, "only the items of the last idle period live"
    assert capacities[-1] == capacities[100], "rows are reused: memory stops growing"
    assert "d0-0" not in model.rows and "d199-1" in model.rows
    live = set(model.rows.values())
    linked = (set(model.links_of(row)) for row in range(len(model.ids)))
    assert all(links <= live for links in linked), "no link to a dropped item"
    assert set(model.trending().tolist()) <= live
    assert set(model.similar(model.inp[model.rows["staple"]], 100).tolist()) <= live


def test_similar_searches_the_most_popular_items_and_those_that_arrived_since() -> None:
    model = ItemModel(EngineConfig(dimensions=4, similar_pool=2, trend_refresh=4))
    everything = np.ones(4, np.float32)

    def similar() -> set[str]:
        return {str(model.ids[row]) for row in model.similar(everything, 10)}

    for ts, item in enumerate(["a", "a", "a", "b", "b", "c"]):
        model.observe(Observation(item, ts, 1.0, True, ()))
    assert similar() == {"a", "b"}, "the two items with the most users"
    model.observe(Observation("d", 6, 1.0, True, ()))
    assert similar() == {"a", "b", "d"}, "a new item is searched before the next refresh"
    for ts in range(7, 10):
        model.observe(Observation("c", ts, 1.0, True, ()))
    assert similar() == {"a", "c"}, "refreshed: c has four users now"
    restored = ItemModel.restore(model.snapshot(), model.config)
    assert restored.similar(everything, 10).tolist() == model.similar(everything, 10).tolist()


def test_refreshes_rank_as_a_ranking_of_the_whole_catalog_would() -> None:
    # A long tail of items, popular ones that fade, sweeps that free rows and rebases: after
    # every refresh the trending items and the pool are the best of all live rows (their
    # popularities are, when some tie).
    config = EngineConfig(
        dimensions=4,
        trending=8,
        similar_pool=20,
        trend_refresh=5,
        sweep_every=97,
        item_idle_ms=3 * DAY,
        pop_short_half_life_ms=DAY // 2,
    )
    rng = random.Random(7)
    model = ItemModel(config)
    for n in range(3_000):
        item = f"i{int(rng.paretovariate(0.8)) % 400}-{n // 700}"
        weight = float(rng.choice([1, 2]))
        model.observe(Observation(item, n // 3 * MINUTE, weight, rng.random() < 0.7, ()))
        if n % 5:
            continue
        trending = model.trending()  # refreshes
        live = np.array(sorted(model.rows.values()))
        short, long = model.short, model.long
        assert short[trending].tolist() == sorted(short[live], reverse=True)[: config.trending]
        pool = model._pool.rows[: len(model._pool.rows) - len(model._arrived)]
        best = sorted(long[live], reverse=True)[: config.similar_pool]
        assert sorted(long[pool], reverse=True) == best


def test_a_model_never_read_keeps_few_risen_rows_and_then_ranks_them_all() -> None:
    config = EngineConfig(dimensions=4, trending=3, similar_pool=10)
    model = ItemModel(config)
    for n in range(10_000):  # a replica that serves nobody learns every event all the same
        model.observe(Observation(f"i{n % 997}", n, 1.0 + n % 7, True, ()))
        assert len(model._risen) <= 4_096 + config.similar_pool
    live = np.array(sorted(model.rows.values()))
    model.flush()
    best = sorted(model.short[live], reverse=True)[: config.trending]
    assert model.short[model.trending()].tolist() == best


def test_a_snapshot_without_the_rows_that_rose_restores_to_a_full_ranking() -> None:
    config = EngineConfig(dimensions=4, trending=2, trend_refresh=1_000)
    model = ItemModel(config)
    for ts, (item, weight) in enumerate([("a", 2.0), ("b", 1.0), ("c", 1.0), ("c", 2.0)]):
        model.observe(Observation(item, ts, weight, True, ()))
        model.trending()
    old = model.snapshot()
    old["trending"] = old["trending"][:3]  # type: ignore[index]
    restored = ItemModel.restore(old, config)
    assert [model.ids[row] for row in model.trending()] == ["a"], "ranked at the first event"
    assert [restored.ids[row] for row in restored.trending()] == ["c", "a"]


def shopping_stream(seed: int = 0, events: int = 1_500) -> list[Observation]:
    """Users buying in three groups; each observation links to the user's previous items."""
    rng = random.Random(seed)
    histories: dict[int, list[tuple[str, int, float]]] = {}
    stream = []
    for n in range(events):
        user = rng.randrange(40)
        item = f"g{user % 3}-{rng.randrange(20)}"
        history = histories.setdefault(user, [])
        recent = tuple(entry for entry in history if entry[0] != item)[-3:]
        first = item not in {entry[0] for entry in history}
        # Some events name the item's category (its group), so that categories are state too.
        category = item.split("-")[0] if n % 3 else None
        stream.append(Observation(item, n * MINUTE, 1.0, first, recent, category))
        history.append((item, n * MINUTE, 1.0))
    return stream


def test_similar_scores_the_vectors_as_they_are_after_every_step() -> None:
    # A pool larger than the catalog holds every item: the answer is the exact top 5 of all
    # items by output vector, ties to the lower row, however the pool's vectors are kept.
    config = EngineConfig(dimensions=8, trend_refresh=50, item_idle_ms=60 * MINUTE)
    model = ItemModel(config)
    interest = np.random.default_rng(0).normal(size=8).astype(np.float32)
    for number, observation in enumerate(shopping_stream(events=600)):
        model.observe(observation)
        if number % 7 == 0:
            found = model.similar(interest, 5).tolist()
            live = np.array(sorted(model.rows.values()))
            scores = model.out[live].astype(np.float64) @ interest.astype(np.float64)
            expected = live[np.lexsort((live, -scores))][:5].tolist()
            assert found == expected, number


def test_the_cached_category_members_and_pool_vectors_follow_every_change() -> None:
    # Items move between categories, go idle and have their rows reused: after every event the
    # cached members of each category and the pool's copy of the output vectors agree with the
    # model's own arrays.
    config = EngineConfig(
        dimensions=4, trend_refresh=1, item_idle_ms=40 * MINUTE, sweep_every=25, similar_pool=10
    )
    model = ItemModel(config)
    rng = random.Random(3)
    interest = np.ones(4, np.float32)
    for observation in shopping_stream(seed=3, events=800):
        model.observe(observation._replace(category=rng.choice(["x", "y", "z", None])))
        model.similar(interest, 3)
        live = len(model.ids)
        for index in range(len(model.category_names)):
            members = np.flatnonzero(model.category[:live] == index)
            expected = model._most_popular(members, config.category_top)
            assert model.category_trending(index).tolist() == expected.tolist()
        pool = model._pool
        assert np.array_equal(pool.vectors, model.out[pool.rows])
    assert model._free or len(model.ids) > len(model.rows), "rows were swept"


def test_an_items_age_counts_from_its_first_event_also_in_a_reused_row() -> None:
    config = EngineConfig(dimensions=4, item_idle_ms=10 * DAY, sweep_every=1)
    model = ItemModel(config)
    model.observe(Observation("old", 0, 1.0, True, ()))
    model.observe(Observation("old", 5 * DAY, 1.0, True, ()))
    old_row = model.rows["old"]
    assert model.first_ts[old_row] == 0
    model.observe(Observation("new", 20 * DAY, 1.0, True, ()))  # "old" idle 15 days: swept
    model.observe(Observation("newer", 21 * DAY, 1.0, True, (("new", 20 * DAY, 1.0),)))
    assert model.rows["newer"] == old_row
    assert model.first_ts[old_row] == 21 * DAY
    restored = ItemModel.restore(model.snapshot(), config)
    assert restored.first_ts[restored.rows["new"]] == 20 * DAY


def test_an_item_keeps_its_latest_category_and_a_freed_row_forgets_it() -> None:
    config = EngineConfig(dimensions=4, item_idle_ms=10 * DAY, sweep_every=1, category_top=2)
    model = ItemModel(config)
    for item, ts, category in [
        ("tea", 0, "drinks"),
        ("jam", 1, "food"),
        ("tea", 2, None),  # an event without a category leaves the item's as it is
        ("cola", 3, "drinks"),
        ("milk", 4, "drinks"),
        ("milk", 5, "drinks"),  # popularity counts each user once: a second user
    ]:
        model.observe(Observation(item, ts, 1.0, True, (), category))
    drinks = model.category_names.index("drinks")
    assert model.category_names[model.category[model.rows["tea"]]] == "drinks"
    assert [model.ids[row] for row in model.category_trending(drinks)] == ["milk", "tea"]
    model.observe(Observation("jam", 6, 1.0, False, (), "spreads"))
    assert model.category_names[model.category[model.rows["jam"]]] == "spreads"
    assert "food" not in model.category_names, "a category no item has is forgotten"
    # 20 days on, every other item is idle: swept, and its categories with it.
    model.observe(Observation("bread", 20 * DAY, 1.0, True, (), "bakery"))
    assert model.category_names == ["bakery"]
    freed = model._free[-1]
    model.observe(Observation("salt", 20 * DAY + 1, 1.0, True, (), None))
    assert model.rows["salt"] == freed and model.category[freed] == -1, "a reused row has none"
    model.observe(Observation("rye", 20 * DAY + 2, 1.0, True, (), "bakery"))
    assert [model.ids[row] for row in model.category_trending(0)] == ["rye", "bread"]
    restored = ItemModel.restore(model.snapshot(), config)
    assert restored.snapshot() == model.snapshot()


def test_snapshot_restore_gives_the_same_lists_and_learns_on_identically() -> None:
    # Default refreshes, so that stale neighbour and trending caches are part of the state.
    config = EngineConfig(dimensions=8, sweep_every=300)
    stream = shopping_stream()
    model = ItemModel(config)
    for observation in stream[:1_000]:
        model.observe(observation)
    restored = ItemModel.restore(model.snapshot(), config)
    for observation in stream[1_000:]:
        request = (*observation.recent, (observation.item_id, observation.ts, 1.0))
        seen = {entry[0] for entry in request}
        ours, theirs = gather(restored, request, seen, config), gather(model, request, seen, config)
        assert [restored.ids[row] for row in ours.rows] == [model.ids[row] for row in theirs.rows]
        assert np.array_equal(ours.links, theirs.links)
        assert np.array_equal(ours.interest, theirs.interest)
        model.observe(observation)
        restored.observe(observation)
    assert restored.snapshot() == model.snapshot()


def follows_stream(rate: float, seed: int = 0) -> tuple[ItemModel, list[str]]:
    """Every user views a random item, then "b" right after "a": trained with ``rate``."""
    rng = random.Random(seed)
    model = ItemModel(EngineConfig(dimensions=16, embedding_rate=rate, negatives=5, seed=seed))
    others = [f"x{n}" for n in range(30)]
    ts = 0
    for _ in range(600):
        ts += MINUTE
        first = rng.choice(others)
        model.observe(Observation(first, ts, 1.0, True, ()))
        if rng.random() < 0.5:
            model.observe(Observation("a", ts + 1, 1.0, True, ((first, ts, 1.0),)))
            model.observe(Observation("b", ts + 2, 1.0, True, (("a", ts + 1, 1.0),)))
        else:
            model.observe(Observation(rng.choice(others), ts + 1, 1.0, True, ((first, ts, 1.0),)))
    return model, others


def similarity_margin(model: ItemModel, others: list[str]) -> float:
    """How much better "b" follows a's context than the random items do."""
    model.flush()
    context = model.inp[model.rows["a"]]  # the interest of a user who has only a
    scores = {item: float(model.out[model.rows[item]] @ context) for item in ["b", *others]}
    return scores["b"] - max(scores[item] for item in others)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_embeddings_learn_that_b_follows_a(seed: int) -> None:
    learned, others = follows_stream(rate=0.05, seed=seed)
    untrained, _ = follows_stream(rate=0.0, seed=seed)
    assert similarity_margin(learned, others) > 0, "b is a's best follower"
    assert similarity_margin(learned, others) > similarity_margin(untrained, others) + 0.5
    context = learned.inp[learned.rows["a"]]
    assert learned.ids[learned.similar(context, 1)[0]] == "b"
