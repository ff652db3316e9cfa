"""Candidate generation: what one user's list is chosen from, with the evidence for each item.

Four sources, so that a user whose items have few neighbours still gets a personal list:

- the co-visitation neighbours of the user's recent items (:meth:`ItemModel.neighbours`);
- the items most similar to the user's interest vector (:meth:`ItemModel.similar`);
- the trending items (:meth:`ItemModel.trending`), which also fill a new user's list;
- content: the most popular items of each category of the user's recent items
  (:meth:`ItemModel.category_trending`), so a new item of the user's taste is a candidate before
  it has links or is popular overall. Items without a category bring none.

The user's seen items are left out. When more than ``config.candidates`` remain, the ones with
the most evidence (normalised co-visitation, then similarity and trend rank) are kept. The
result holds arrays over candidates that :mod:`operators.features` turns into features.

>>> from operators.item_model import ItemModel, Observation
>>> model = ItemModel(EngineConfig(dimensions=4))
>>> for item, ts, recent in [("tea", 0, ()), ("jam", 1, (("tea", 0, 1.0),)), ("cup", 2, ())]:
...     model.observe(Observation(item, ts, 1.0, True, recent))
>>> candidates = gather(model, (("tea", 3, 1.0),), {"tea"}, EngineConfig(dimensions=4))
>>> sorted(model.ids[row] for row in candidates.rows)
['cup', 'jam']
>>> candidates.links.shape
(1, 2)

Kvass has no link and, with no trending or similar items asked for, only its category (that of
the user's tea) makes it a candidate:

>>> model.observe(Observation("kvass", 4, 1.0, True, (), "drinks"))
>>> model.observe(Observation("tea", 5, 1.0, False, (), "drinks"))
>>> only_links = EngineConfig(dimensions=4, trend_top=0, similar=0)
>>> candidates = gather(model, (("tea", 5, 1.0),), {"tea"}, only_links)
>>> [model.ids[row] for row in candidates.rows], candidates.category_share.tolist()
(['jam', 'kvass'], [0.0, 1.0])
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import numpy as np

from operators.engine_config import EngineConfig
from operators.item_model import ItemModel

#: One history entry as a request carries it: (item_id, ts, weight), oldest first.
Entry = tuple[str, int, float]


@dataclass(slots=True)
class Candidates:
    """The candidates of one list and the evidence for each (arrays over candidates)."""

    #: Item model rows of the candidates.
    rows: np.ndarray
    #: Item model rows of the history items the list is built from, oldest first.
    history: np.ndarray
    #: Weight of each history row: its event's weight, decayed by age and position.
    recency: np.ndarray
    #: (history, candidates): stored co-visitation weight from each history item.
    links: np.ndarray
    #: The user's interest vector (recency-weighted input vectors of the history).
    interest: np.ndarray
    #: Each candidate's output vector against the interest vector.
    similarity: np.ndarray
    #: ``1 / (1 + position)`` among the trending items, 0 when not trending.
    trend_rank: np.ndarray
    #: The recency-weighted share of the history in each candidate's category (0: none).
    category_share: np.ndarray
    #: ``1 / (1 + position)`` among the most popular items of its category when that is one of
    #: the history's, else 0.
    category_rank: np.ndarray
    #: The event time the list is for.
    ts: int

    def __len__(self) -> int:
        return len(self.rows)


def history_weights(stamps: np.ndarray, weights: np.ndarray, config: EngineConfig) -> np.ndarray:
    """Each history entry's weight (``stamps``, ``weights``: oldest first), halved per
    ``recency_half_life_ms`` of age and per ``recency_half_life_items`` newer entries."""
    count = len(stamps)
    if not count:
        return np.zeros(0)
    age = (stamps.max() - stamps) / config.recency_half_life_ms
    position = np.arange(count - 1, -1, -1) / config.recency_half_life_items
    return weights * np.exp2(-(age + position))


def rank_share(values: np.ndarray) -> np.ndarray:
    """``1 / (1 + position)`` of each value in descending order (ties by position)."""
    order = np.argsort(-values, kind="stable")
    ranks = np.empty(len(values))
    ranks[order] = np.arange(1, len(values) + 1)
    return 1.0 / ranks


def gather(
    model: ItemModel, history: tuple[Entry, ...], seen: Collection[str], config: EngineConfig
) -> Candidates:
    """The candidates for a user whose recent history is ``history`` (oldest first)."""
    model.flush()
    rows_of = model.rows
    history_rows = np.zeros(0, np.intp)
    recency = np.zeros(0)
    ts = model.ref
    if history:
        items, stamps, weights = zip(*history, strict=True)
        every_row = np.array([rows_of.get(item, -1) for item in items], np.intp)
        known = every_row >= 0
        history_rows = every_row[known]
        recency = history_weights(np.array(stamps, float), np.array(weights), config)[known]
        ts = max(stamps)
    interest = (
        model.interest(history_rows, recency / recency.sum())
        if len(history_rows)
        else np.zeros(config.dimensions, np.float32)
    )
    linked, link_weights, lengths = _neighbours(model, history_rows)
    trending = model.trending()
    wanted = config.similar if len(history_rows) and config.embeddings else 0
    similar = model.similar(interest, wanted)
    tastes, taste_shares = _tastes(model, history_rows, recency)
    offered = [model.category_trending(category) for category in tastes.tolist()]
    pool = np.concatenate((linked, similar, trending[: config.trend_top], *offered))
    content_start = len(pool) - sum(map(len, offered))
    ordered = np.sort(pool)
    distinct = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
    seen_rows = np.array([row for row in map(rows_of.get, seen) if row is not None], np.intp)
    keep = ~_members(distinct, seen_rows)
    rows = distinct[keep]
    #: Each pool entry's column among the candidates, -1 for a seen item.
    column = np.where(keep, np.cumsum(keep) - 1, -1)[np.searchsorted(distinct, pool)]
    links = np.zeros((len(history_rows), len(rows)))
    if len(linked):
        columns = column[: len(linked)]
        history_index = np.repeat(np.arange(len(history_rows)), lengths)
        valid = columns >= 0
        links[history_index[valid], columns[valid]] = link_weights[valid]
    trend_rank = np.zeros(len(rows))
    trend_start = len(linked) + len(similar)
    trend_columns = column[trend_start:content_start]
    valid = trend_columns >= 0
    trend_rank[trend_columns[valid]] = 1.0 / np.arange(1, len(trend_columns) + 1)[valid]
    similarity = model.out[rows] @ interest if len(history_rows) else np.zeros(len(rows))
    category_share = np.zeros(len(rows))
    category_rank = np.zeros(len(rows))
    if len(tastes):
        categories = model.category[rows]
        at = np.minimum(np.searchsorted(tastes, categories), len(tastes) - 1)
        category_share = np.where(tastes[at] == categories, taste_shares[at], 0.0)
        # Each row has one category, so it is at most once among the content rows.
        content_columns = column[content_start:]
        valid = content_columns >= 0
        positions = np.concatenate([np.arange(1, len(part) + 1) for part in offered])
        category_rank[content_columns[valid]] = 1.0 / positions[valid]
    candidates = Candidates(
        rows,
        history_rows,
        recency,
        links,
        interest,
        similarity,
        trend_rank,
        category_share,
        category_rank,
        ts,
    )
    if len(rows) > config.candidates:
        candidates = _strongest(model, candidates, config.candidates)
    return candidates


def _tastes(
    model: ItemModel, history_rows: np.ndarray, recency: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The categories of the history rows (sorted indexes) and the recency-weighted share of
    the history in each."""
    shares: dict[int, float] = {}
    # A loop over at most ``query_recent`` entries: np.unique cost four times as much.
    categories = model.category[history_rows].tolist()
    for category, weight in zip(categories, recency.tolist(), strict=True):
        if category >= 0:
            shares[category] = shares.get(category, 0.0) + weight
    if not shares:
        return np.zeros(0, np.int32), np.zeros(0)
    tastes = sorted(shares)
    total = recency.sum()
    return np.array(tastes, np.int32), np.array([shares[taste] / total for taste in tastes])


def _neighbours(
    model: ItemModel, history_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The neighbour rows of every history row, one after the other, their link weights, and
    how many each history row has."""
    if not len(history_rows):
        return np.zeros(0, np.intp), np.zeros(0), np.zeros(0, np.intp)
    rows, weights = zip(*map(model.neighbours, history_rows.tolist()), strict=True)
    lengths = np.fromiter(map(len, rows), np.intp, len(rows))
    return np.concatenate(rows), np.concatenate(weights), lengths


def _members(sorted_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """A mask of the entries of ``sorted_rows`` (sorted, distinct) that are in ``rows``."""
    found = np.zeros(len(sorted_rows), bool)
    if len(rows) and len(sorted_rows):
        at = np.minimum(np.searchsorted(sorted_rows, rows), len(sorted_rows) - 1)
        found[at[sorted_rows[at] == rows]] = True
    return found


def _strongest(model: ItemModel, candidates: Candidates, keep: int) -> Candidates:
    """The ``keep`` candidates with the most evidence."""
    mass = np.maximum(model.mass[candidates.history], 1e-12)
    conditional = (candidates.recency / mass) @ candidates.links
    strength = (
        conditional / (conditional.max() or 1.0)
        + candidates.trend_rank
        + rank_share(candidates.similarity)
        + candidates.category_share * candidates.category_rank
    )
    chosen = np.sort(np.argpartition(-strength, keep - 1)[:keep])
    return Candidates(
        candidates.rows[chosen],
        candidates.history,
        candidates.recency,
        candidates.links[:, chosen],
        candidates.interest,
        candidates.similarity[chosen],
        candidates.trend_rank[chosen],
        candidates.category_share[chosen],
        candidates.category_rank[chosen],
        candidates.ts,
    )
