"""Candidate generation: the neighbours of a user's recent items plus the trending items.

Built once per request from the gathered replies, as arrays the features are computed from:
``links[h, c]`` is the decayed co-occurrence weight from the ``h``-th history item of the
header to candidate ``c``. The same candidates serve both lists of the request: the training
list (history rows before the window, the window's new items as positives) and the served list
(all rows, without the window's items). Other items the user has seen are excluded. When there
are more than ``config.candidates``, the ones with the strongest co-occurrence are kept
(trending ones fill up a cold user's list).

>>> from operators.messages import RankHeader, RankPart, TREND_KEY
>>> header = RankHeader(("u1", 2), 0, 10, (("a", 5, 1.0, None), ("b", 10, 1.0, None)), before=1,
...                     labels=("b",), seen=frozenset({"a", "b"}), parts=3)
>>> parts = [RankPart(("u1", 2), 0, "a", ("b", "c"), (3.0, 1.0), scale=0.5, popularity=4.0),
...          RankPart(("u1", 2), 0, "b", ("a", "d"), (3.0, 2.0)),
...          RankPart(("u1", 2), 0, TREND_KEY, ("d", "e"), (9.0, 1.0), long_weights=(2.0, 4.0))]
>>> candidates = gather_candidates(header, parts, EngineConfig())
>>> candidates.items, candidates.labels.tolist()
(['b', 'c', 'd', 'e'], [True, False, False, False])
>>> candidates.links.tolist()
[[1.5, 0.5, 0.0, 0.0], [0.0, 0.0, 2.0, 0.0]]
>>> candidates.trend_short.tolist(), candidates.trend_rank.tolist()
([0.0, 0.0, 1.0, 0.111...], [0.0, 0.0, 1.0, 0.5])
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain, compress

import numpy as np

from operators.engine_config import EngineConfig
from operators.messages import TREND_KEY, RankHeader, RankPart


@dataclass(slots=True)
class Candidates:
    """The candidate items of one request and the evidence for each (arrays over candidates)."""

    items: list[str]
    #: (history rows, candidates): decayed co-occurrence weight from each history item.
    links: np.ndarray
    #: Decayed popularity of each history item (row), to normalise its links.
    sources: np.ndarray
    #: Trending popularity relative to the most trending item (0 when not trending).
    trend_short: np.ndarray
    trend_long: np.ndarray
    #: ``1 / (1 + position)`` in the trending list (0 when not trending).
    trend_rank: np.ndarray
    #: Each candidate's category where a reply named it (None: no reply named any).
    categories: list[str | None] | None
    #: True for the window's new items: the training positives, never served.
    labels: np.ndarray


def gather_candidates(
    header: RankHeader, parts: Iterable[RankPart], config: EngineConfig
) -> Candidates:
    """Candidates of one request from its header and all its replies."""
    by_source = {part.source: part for part in parts}
    trend = by_source.pop(TREND_KEY)
    rows = [by_source[entry[0]] for entry in header.history]
    # The window's new items stay candidates (as training positives) though already seen.
    labels = frozenset(header.labels)
    excluded = header.seen - labels
    # Every neighbour id in row order, then the trending ones. ``first`` maps each id to its
    # first occurrence, so candidate order (and tie-breaking) is deterministic; the loops over
    # ids run in C.
    lengths = [len(part.items) for part in rows]
    ids = list(chain.from_iterable(part.items for part in rows))
    linked = len(ids)
    ids.extend(trend.items)
    size = len(ids)
    first = dict(zip(reversed(ids), range(size - 1, -1, -1), strict=True))
    occurrence = np.fromiter(map(first.__getitem__, ids), np.intp, size)
    starts = np.flatnonzero(occurrence == np.arange(size))
    unique = [ids[index] for index in starts.tolist()]
    kept = np.fromiter(map(excluded.__contains__, unique), bool, len(unique))
    np.logical_not(kept, out=kept)
    count = int(kept.sum())
    # Column of each entry among the kept candidates, -1 for an excluded one.
    column_of_start = np.full(size, -1, np.intp)
    column_of_start[starts[kept]] = np.arange(count)
    columns = column_of_start[occurrence]
    unique = list(compress(unique, kept.tolist()))
    links = np.zeros((len(rows), count))
    if linked:
        weights = np.fromiter(chain.from_iterable(part.weights for part in rows), float, linked)
        weights *= np.repeat([part.scale for part in rows], lengths)
        row_of = np.repeat(np.arange(len(rows)), lengths)
        keep = columns[:linked] >= 0
        links[row_of[keep], columns[:linked][keep]] = weights[keep]
    sources = np.array([part.popularity for part in rows])
    trend_short = np.zeros(count)
    trend_long = np.zeros(count)
    trend_rank = np.zeros(count)
    if trend.items:
        columns = columns[linked:]
        keep = columns >= 0
        at = columns[keep]
        short = np.array(trend.weights)
        long = np.array(trend.long_weights)
        trend_short[at] = (short / short[0])[keep]
        trend_long[at] = (long / long.max())[keep]
        trend_rank[at] = (1.0 / np.arange(1, len(trend.items) + 1))[keep]
    categorised = [part for part in rows if part.categories]
    categories: list[str | None] | None = None
    if categorised:
        pairs = (zip(part.items, part.categories, strict=True) for part in categorised)
        known = dict(chain.from_iterable(pairs))
        categories = list(map(known.get, unique))
    candidates = Candidates(
        unique,
        links,
        sources,
        trend_short,
        trend_long,
        trend_rank,
        categories,
        np.fromiter(map(labels.__contains__, unique), bool, count),
    )
    if count > config.candidates:
        candidates = _strongest(candidates, config.candidates)
    return candidates


def _strongest(candidates: Candidates, keep: int) -> Candidates:
    """The ``keep`` candidates with the most co-occurrence evidence, trending ones next."""
    links = candidates.links
    categories = candidates.categories
    peak = links.max() if links.size else 0.0
    strength = links.sum(axis=0) / (peak or 1.0) + candidates.trend_rank + candidates.labels
    chosen = np.sort(np.argpartition(-strength, keep)[:keep])
    return Candidates(
        [candidates.items[index] for index in chosen],
        links[:, chosen],
        candidates.sources,
        candidates.trend_short[chosen],
        candidates.trend_long[chosen],
        candidates.trend_rank[chosen],
        None if categories is None else [categories[index] for index in chosen],
        candidates.labels[chosen],
    )
