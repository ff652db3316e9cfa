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
from itertools import repeat

import numpy as np

from operators.engine_config import EngineConfig
from operators.messages import TREND_KEY, RankHeader, RankPart

_NOT_FOUND = repeat(-1)


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
    #: Each candidate's category where a reply named it, else None.
    categories: list[str | None]
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
    seen = header.seen - labels
    # Every neighbour id in row order then the trending ones: dict.fromkeys keeps the first
    # occurrence, so candidate order (and tie-breaking) is deterministic.
    every = [item for part in rows for item in part.items]
    unique = [item for item in dict.fromkeys([*every, *trend.items]) if item not in seen]
    position = {item: index for index, item in enumerate(unique)}
    count = len(unique)
    links = np.zeros((len(rows), count))
    for row, part in enumerate(rows):
        if part.items:
            columns = np.fromiter(map(position.get, part.items, _NOT_FOUND), float, len(part.items))
            keep = columns >= 0
            links[row, columns[keep].astype(np.intp)] = np.asarray(part.weights)[keep] * part.scale
    sources = np.fromiter((part.popularity for part in rows), float, len(rows))
    trend_short = np.zeros(count)
    trend_long = np.zeros(count)
    trend_rank = np.zeros(count)
    if trend.items:
        columns = np.fromiter(map(position.get, trend.items, _NOT_FOUND), float, len(trend.items))
        keep = columns >= 0
        at = columns[keep].astype(np.intp)
        short = np.asarray(trend.weights)
        long = np.asarray(trend.long_weights)
        trend_short[at] = (short / short.max())[keep]
        trend_long[at] = (long / long.max())[keep]
        trend_rank[at] = (1.0 / np.arange(1, len(trend.items) + 1))[keep]
    categories: dict[str, str | None] = {}
    for part in rows:
        if part.categories:
            categories.update(
                (item, category) for item, category in zip(part.items, part.categories, strict=True)
            )
    candidates = Candidates(
        unique,
        links,
        sources,
        trend_short,
        trend_long,
        trend_rank,
        list(map(categories.get, unique)) if categories else [None] * count,
        np.fromiter((item in labels for item in unique), bool, count),
    )
    if count > config.candidates:
        candidates = _strongest(candidates, config.candidates)
    return candidates


def _strongest(candidates: Candidates, keep: int) -> Candidates:
    """The ``keep`` candidates with the most co-occurrence evidence, trending ones next."""
    links = candidates.links
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
        [candidates.categories[index] for index in chosen],
        candidates.labels[chosen],
    )
