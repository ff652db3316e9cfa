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
from itertools import repeat

import numpy as np
from numba import njit

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


@njit(
    "Tuple((int64[:], float64[:], float32[:]))(int64[:], int64[:], float64[:], float32[:, :],"
    " float64, float64)",
    cache=True,
)
def _history(
    rows: np.ndarray,
    stamps: np.ndarray,
    weights: np.ndarray,
    inp: np.ndarray,
    half_life_ms: float,
    half_life_items: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The known rows of a history (``rows``: -1 for an item the model does not know, oldest
    first), the weight of each (its event's, halved per ``half_life_ms`` of age and per
    ``half_life_items`` newer entries) and the interest vector: the weighted mean of their input
    vectors."""
    count = len(rows)
    newest = stamps.max() if count else 0
    known = rows >= 0
    recency = np.empty(count)
    for index in range(count):
        age = (newest - stamps[index]) / half_life_ms + (count - 1 - index) / half_life_items
        recency[index] = weights[index] * 2.0**-age
    recency = recency[known]
    history = rows[known]
    interest = np.zeros(inp.shape[1])
    total = recency.sum()
    if total > 0:  # zero when every event's type weighs nothing: no interest
        for index in range(len(history)):
            interest += recency[index] / total * inp[history[index]]
    return history, recency, interest.astype(np.float32)


@njit("float64[:](float64[:])", cache=True)
def rank_share(values: np.ndarray) -> np.ndarray:
    """``1 / (1 + position)`` of each value in descending order (ties by position)."""
    order = np.argsort(-values, kind="mergesort")
    shares = np.empty(len(values))
    for position in range(len(order)):
        shares[order[position]] = 1.0 / (position + 1)
    return shares


@njit("float64(float32[:], float32[:])", cache=True)
def dot(left: np.ndarray, right: np.ndarray) -> float:
    """A dot product of two short vectors, summed in float64: ``np.dot`` calls BLAS, whose
    overhead on 32 entries is ten times the sum."""
    total = 0.0
    for index in range(len(left)):
        total += left[index] * right[index]
    return total


def gather(
    model: ItemModel, history: tuple[Entry, ...], seen: Collection[str], config: EngineConfig
) -> Candidates:
    """The candidates for a user whose recent history is ``history`` (oldest first)."""
    model.flush()
    rows_of = model.rows
    history_rows, recency = np.zeros(0, np.int64), np.zeros(0)
    interest = np.zeros(config.dimensions, np.float32)
    ts = model.ref
    if history:
        items, stamps, weights = zip(*history, strict=True)
        ts = max(stamps)
        history_rows, recency, interest = _history(
            np.fromiter(map(rows_of.get, items, repeat(-1)), np.int64, len(items)),
            np.array(stamps, np.int64),
            np.array(weights, float),
            model.inp,
            config.recency_half_life_ms,
            config.recency_half_life_items,
        )
    model.refresh_neighbours(history_rows)
    wanted = config.similar if len(history_rows) and config.embeddings else 0
    tastes, taste_shares = _tastes(model.category, history_rows, recency, recency.sum())
    offered = [model.category_trending(category) for category in tastes.tolist()]
    # -1 for a seen item the model no longer knows.
    seen_rows = np.fromiter(map(rows_of.get, seen, repeat(-1)), np.int64, len(seen))
    arrays = _assemble(
        history_rows,
        recency,
        model.top_rows,
        model.top_weights,
        model.top_count,
        model.similar(interest, wanted),
        model.trending()[: config.trend_top],
        np.concatenate((np.zeros(0, np.intp), *offered)),
        np.concatenate([np.arange(1.0, len(part) + 1) for part in offered] or [np.zeros(0)]),
        seen_rows[seen_rows >= 0],
        model.category,
        tastes,
        taste_shares,
        model.out,
        interest,
        model.mass,
        model.scratch(),
        config.candidates,
    )
    return Candidates(arrays[0], history_rows, recency, arrays[1], interest, *arrays[2:], ts)


@njit(
    "Tuple((int32[:], float64[:]))(int32[:], int64[:], float64[:], float64)",
    cache=True,
    error_model="numpy",
)
def _tastes(
    category: np.ndarray, history_rows: np.ndarray, recency: np.ndarray, total: float
) -> tuple[np.ndarray, np.ndarray]:
    """The categories of the history rows (sorted indexes) and the recency-weighted share of
    the history in each (``total``: numpy's sum of ``recency``). Compiled: as a Python loop over at
    most ``query_recent`` entries it cost a million-user list 9 us, np.unique four times that."""
    tastes = np.empty(len(history_rows), np.int32)
    shares = np.empty(len(history_rows))
    found = 0
    for index in range(len(history_rows)):
        taste = category[history_rows[index]]
        if taste < 0:
            continue
        at = 0
        while at < found and tastes[at] != taste:
            at += 1
        if at == found:
            tastes[at], shares[at] = taste, 0.0
            found += 1
        shares[at] += recency[index]
    order = np.argsort(tastes[:found])
    return tastes[:found][order], shares[:found][order] / total


@njit(
    "Tuple((int64[:], float64[:, :], float64[:], float64[:], float64[:], float64[:]))"
    "(int64[:], float64[:], int32[:, :], float64[:, :], int32[:], int64[:], int64[:], int64[:],"
    " float64[:], int64[:], int32[:], int32[:], float64[:], float32[:, :], float32[:],"
    " float64[:], int64[:], int64)",
    cache=True,
)
def _assemble(
    history: np.ndarray,
    recency: np.ndarray,
    top_rows: np.ndarray,
    top_weights: np.ndarray,
    top_count: np.ndarray,
    similar: np.ndarray,
    trending: np.ndarray,
    offered: np.ndarray,
    offered_position: np.ndarray,
    seen: np.ndarray,
    category: np.ndarray,
    tastes: np.ndarray,
    taste_shares: np.ndarray,
    out: np.ndarray,
    interest: np.ndarray,
    mass: np.ndarray,
    slot: np.ndarray,
    keep: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The candidates' rows (sorted), links, similarity, trend rank, category share and
    category rank: the neighbours of the ``history`` rows, ``similar``, ``trending`` and
    ``offered`` rows (content, at ``offered_position`` in its category) less the ``seen`` ones,
    pruned to the ``keep`` with the most evidence.

    One compiled pass instead of about sixty numpy calls on arrays of a few hundred entries,
    whose cost was the calls. ``slot`` (-1 for every row, as it is left) marks each row's
    column while the pass runs, so nothing the size of the catalog is allocated."""
    seen_mark, pooled = -3, -2
    for row in seen:
        slot[row] = seen_mark
    pool = np.empty(
        top_count[history].sum() + len(similar) + len(trending) + len(offered), np.int64
    )
    size = 0
    for row in history:
        for other in top_rows[row, : top_count[row]]:
            if slot[other] == -1:
                slot[other] = pooled
                pool[size] = other
                size += 1
    for part in (similar, trending, offered):
        for other in part:
            if slot[other] == -1:
                slot[other] = pooled
                pool[size] = other
                size += 1
    rows = np.sort(pool[:size])
    for column in range(size):
        slot[rows[column]] = column
    trend_rank = np.zeros(size)
    for position in range(len(trending)):
        column = slot[trending[position]]
        if column >= 0:
            trend_rank[column] = 1.0 / (position + 1)
    category_rank = np.zeros(size)
    for position in range(len(offered)):
        column = slot[offered[position]]
        if column >= 0:
            category_rank[column] = 1.0 / offered_position[position]
    category_share = np.zeros(size)
    similarity = np.zeros(size)
    for column in range(size):
        row = rows[column]
        if len(tastes):
            at = min(np.searchsorted(tastes, category[row]), len(tastes) - 1)
            if tastes[at] == category[row]:
                category_share[column] = taste_shares[at]
        if len(history):
            similarity[column] = dot(out[row], interest)
    # Each pooled row's column among the kept ones (all of them when no more than ``keep``).
    kept_at = np.arange(size)
    if size > keep:
        strength = rank_share(similarity)
        # Each history item's neighbours add to their conditional strength as they are read
        # (a candidate's terms in history order, as before); the link matrix is built after
        # the pruning, for the kept columns only.
        conditional = np.zeros(size)
        for index in range(len(history)):
            row = history[index]
            weight = recency[index] / max(mass[row], 1e-12)
            for position in range(top_count[row]):
                column = slot[top_rows[row, position]]
                if column >= 0:
                    conditional[column] += weight * top_weights[row, position]
        strongest = conditional.max()
        scale = 1.0 / strongest if strongest > 0 else 1.0
        for column in range(size):
            strength[column] += (
                conditional[column] * scale
                + trend_rank[column]
                + category_share[column] * category_rank[column]
            )
        # The ``keep`` strongest, ties in column order: a threshold, not a sort.
        threshold = np.partition(-strength, keep - 1)[keep - 1]
        chosen = np.empty(keep, np.int64)
        taken = 0
        for column in range(size):
            if -strength[column] < threshold:
                chosen[taken] = column
                taken += 1
        for column in range(size):
            if taken < keep and -strength[column] == threshold:
                chosen[taken] = column
                taken += 1
        chosen.sort()
        kept_at[:] = -1
        kept_at[chosen] = np.arange(keep)
        rows, similarity = rows[chosen], similarity[chosen]
        trend_rank, category_share = trend_rank[chosen], category_share[chosen]
        category_rank = category_rank[chosen]
    links = np.zeros((len(history), len(rows)))
    for index in range(len(history)):
        row = history[index]
        for position in range(top_count[row]):
            column = slot[top_rows[row, position]]
            if column >= 0 and kept_at[column] >= 0:
                links[index, kept_at[column]] = top_weights[row, position]
    for row in pool[:size]:
        slot[row] = -1
    for row in seen:
        slot[row] = -1
    return rows, links, similarity, trend_rank, category_share, category_rank
