"""Per-candidate features of one list, computed with numpy over the candidates at once.

A list is built from the first ``rows`` history rows of a request: the training list from the
rows before the window's basket (``header.before``), the served list from all of them. Each row
``h`` gets a recency weight ``r[h] = weight * 0.5 ** (age / half_life)``, the age counted from
the newest row of the list. The columns, in the fixed order :data:`FEATURES`:

* ``co_sum``: log(1 + sum over rows of r[h] * link[h, c]), the recency-weighted co-occurrence;
* ``co_conditional``: the same average of link[h, c] / popularity[h] (how often c follows h);
* ``co_max``: log(1 + the strongest single recency-weighted link);
* ``co_count``: the share of history rows that link to c;
* ``co_last``: log(1 + link from the most recent history item);
* ``pop_short``, ``pop_long``: popularity relative to the most trending item;
* ``trend_rank``: 1 / (1 + position in the trending list);
* ``category``: the share of the user's category interest in the candidate's category.

>>> from operators.messages import RankHeader, RankPart, TREND_KEY
>>> from operators.candidates import gather_candidates
>>> from operators.engine_config import EngineConfig
>>> day = 86_400_000
>>> header = RankHeader(("u1", 2), 0, 14 * day, (("a", 0, 1.0, None), ("b", 14 * day, 1.0, None)),
...                     before=1, labels=("b",), seen=frozenset({"a", "b"}), parts=3)
>>> parts = [RankPart(("u1", 2), 0, "a", ("c",), (3.0,), popularity=6.0),
...          RankPart(("u1", 2), 0, "b", ("c", "d"), (1.0, 1.0), popularity=2.0),
...          RankPart(("u1", 2), 0, TREND_KEY, (), ())]
>>> candidates = gather_candidates(header, parts, EngineConfig())
>>> training = feature_matrix(header, candidates, header.before, half_life=14 * day)
>>> candidates.items, training[:, FEATURES.index("co_sum")].round(3).tolist()
(['c', 'd'], [1.386, 0.0])
>>> served = feature_matrix(header, candidates, len(header.history), half_life=14 * day)
>>> served[:, FEATURES.index("co_count")].tolist()
[1.0, 0.5]
"""

from __future__ import annotations

import numpy as np

from operators.candidates import Candidates
from operators.messages import RankHeader

FEATURES: tuple[str, ...] = (
    "co_sum",
    "co_conditional",
    "co_max",
    "co_count",
    "co_last",
    "pop_short",
    "pop_long",
    "trend_rank",
    "category",
)

#: The hand-set blend (the "fixed" ranker, and where the learned ranker starts).
FIXED_WEIGHTS: dict[str, float] = {
    "co_sum": 0.25,
    "co_conditional": 0.25,
    "co_max": 0.0,
    "co_count": 0.05,
    "co_last": 0.0,
    "pop_short": 1.0,
    "pop_long": 0.05,
    "trend_rank": 0.025,
    "category": 1.0,
}


def feature_matrix(
    header: RankHeader, candidates: Candidates, rows: int, half_life: float
) -> np.ndarray:
    """The (candidates, features) matrix of the list built from the first ``rows`` rows."""
    matrix = np.zeros((len(candidates.items), len(FEATURES)))
    if rows:
        history = header.history[:rows]
        stamps = np.fromiter((entry[1] for entry in history), float, rows)
        recency = np.fromiter((entry[2] for entry in history), float, rows)
        # Ages count from the list's newest row, so the training list weighs its rows like
        # the served list however long ago the basket before the window was.
        recency *= np.exp2((stamps - stamps.max()) / half_life)
        links = candidates.links[:rows]
        conditional = np.minimum(links / np.maximum(candidates.sources[:rows], 1e-9)[:, None], 1.0)
        matrix[:, 0] = np.log1p(recency @ links)
        matrix[:, 1] = (recency @ conditional) / recency.sum()
        matrix[:, 2] = np.log1p((recency[:, None] * links).max(axis=0))
        matrix[:, 3] = np.count_nonzero(links, axis=0) / rows
        matrix[:, 4] = np.log1p(links[rows - 1])
    matrix[:, 5] = candidates.trend_short
    matrix[:, 6] = candidates.trend_long
    matrix[:, 7] = candidates.trend_rank
    if candidates.categories is not None:
        matrix[:, 8] = _category_affinity(header, candidates.categories, rows)
    return matrix


def _category_affinity(header: RankHeader, categories: list[str | None], rows: int) -> list[float]:
    """The share of the user's interest in each candidate's category: the profile before the
    window, plus the window's items when the list includes them."""
    profile = dict(header.profile)
    labels = header.labels
    for item_id, _, weight, category in header.history[header.before : rows]:
        if category is not None and item_id in labels:
            profile[category] = profile.get(category, 0.0) + weight
    total = sum(profile.values()) or 1.0
    return [
        profile.get(category, 0.0) / total if category is not None else 0.0
        for category in categories
    ]
