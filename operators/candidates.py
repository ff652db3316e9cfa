"""Candidate generation: what one user's list is chosen from, with the evidence for each item.

Three sources, so that a user whose items have few neighbours still gets a personal list:

- the co-visitation neighbours of the user's recent items (:meth:`ItemModel.neighbours`);
- the items most similar to the user's interest vector (:meth:`ItemModel.similar`);
- the trending items (:meth:`ItemModel.trending`), which also fill a new user's list.

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
    #: ``1 / (1 + position)`` among the trending items, 0 when not trending.
    trend_rank: np.ndarray
    #: The event time the list is for.
    ts: int

    def __len__(self) -> int:
        return len(self.rows)


def history_weights(history: tuple[Entry, ...], config: EngineConfig) -> np.ndarray:
    """Each entry's weight, halved per ``recency_half_life_ms`` of age and per
    ``recency_half_life_items`` newer entries."""
    count = len(history)
    if not count:
        return np.zeros(0)
    stamps = np.fromiter((entry[1] for entry in history), float, count)
    weights = np.fromiter((entry[2] for entry in history), float, count)
    age = (stamps.max() - stamps) / config.recency_half_life_ms
    position = np.arange(count - 1, -1, -1) / config.recency_half_life_items
    return weights * np.exp2(-(age + position))


def gather(
    model: ItemModel, history: tuple[Entry, ...], seen: Collection[str], config: EngineConfig
) -> Candidates:
    """The candidates for a user whose recent history is ``history`` (oldest first)."""
    model.flush()
    rows_of = model.rows
    known = [
        (rows_of[entry[0]], index) for index, entry in enumerate(history) if entry[0] in rows_of
    ]
    history_rows = np.fromiter((row for row, _ in known), np.intp, len(known))
    recency = history_weights(history, config)[[index for _, index in known]]
    ts = max((entry[1] for entry in history), default=model.ref)
    interest = (
        model.interest(history_rows, recency / recency.sum())
        if len(known)
        else np.zeros(config.dimensions, np.float32)
    )
    tops = [model.neighbours(row) for row in history_rows.tolist()]
    lengths = np.fromiter((len(top[0]) for top in tops), np.intp, len(tops))
    linked = np.concatenate([top[0] for top in tops]) if tops else np.zeros(0, np.intp)
    trending = model.trending()
    wanted = config.similar if len(known) and config.embeddings else 0
    similar = model.similar(interest, wanted)
    pool = np.concatenate((linked, similar, trending[: config.trend_top]))
    ordered = np.sort(pool)
    distinct = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
    seen_rows = np.fromiter((rows_of[item] for item in seen if item in rows_of), np.intp)
    keep = ~_members(distinct, seen_rows)
    rows = distinct[keep]
    #: Each pool entry's column among the candidates, -1 for a seen item.
    column = np.where(keep, np.cumsum(keep) - 1, -1)[np.searchsorted(distinct, pool)]
    links = np.zeros((len(history_rows), len(rows)))
    if len(linked):
        columns = column[: len(linked)]
        weights = np.concatenate([top[1] for top in tops])
        history_index = np.repeat(np.arange(len(history_rows)), lengths)
        valid = columns >= 0
        links[history_index[valid], columns[valid]] = weights[valid]
    trend_rank = np.zeros(len(rows))
    trend_columns = column[len(linked) + len(similar) :]
    valid = trend_columns >= 0
    trend_rank[trend_columns[valid]] = 1.0 / np.arange(1, len(trend_columns) + 1)[valid]
    candidates = Candidates(rows, history_rows, recency, links, interest, trend_rank, ts)
    if len(rows) > config.candidates:
        candidates = _strongest(model, candidates, config.candidates)
    return candidates


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
    conditional = candidates.recency @ (candidates.links / mass[:, None])
    similarity = model.out[candidates.rows] @ candidates.interest
    rank = np.argsort(np.argsort(-similarity, kind="stable"), kind="stable")
    strength = conditional / (conditional.max() or 1.0) + candidates.trend_rank + 1.0 / (1.0 + rank)
    chosen = np.sort(np.argpartition(-strength, keep - 1)[:keep])
    return Candidates(
        candidates.rows[chosen],
        candidates.history,
        candidates.recency,
        candidates.links[:, chosen],
        candidates.interest,
        candidates.trend_rank[chosen],
        candidates.ts,
    )
