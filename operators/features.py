"""Per-candidate features, computed with numpy for both lists of a request at once.

Each history row ``h`` gets a recency weight ``r[h] = weight * 0.5 ** (age / half_life)``. The
training list uses only the rows before the window (``header.before``), the served list all
rows; both come out of one matrix product over the candidates' link matrix. The columns, in
the fixed order :data:`FEATURES`:

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
>>> before, after = feature_matrices(header, candidates, half_life=14 * day)
>>> candidates.items, before[:, FEATURES.index("co_sum")].round(3).tolist()
(['c', 'd'], [0.916, 0.0])
>>> after[:, FEATURES.index("co_count")].tolist()
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
    "co_sum": 1.0,
    "co_conditional": 1.0,
    "co_max": 0.5,
    "co_count": 0.5,
    "co_last": 0.5,
    "pop_short": 0.3,
    "pop_long": 0.2,
    "trend_rank": 0.1,
    "category": 0.5,
}


def feature_matrices(
    header: RankHeader, candidates: Candidates, half_life: float
) -> tuple[np.ndarray, np.ndarray]:
    """The (candidates, features) matrices of the training list and of the served list."""
    history = header.history
    rows = len(history)
    before = header.before
    count = len(candidates.items)
    ages = header.as_of - np.fromiter((entry[1] for entry in history), float, rows)
    recency = np.fromiter((entry[2] for entry in history), float, rows)
    recency *= np.exp2(-np.maximum(ages, 0.0) / half_life)
    views = np.zeros((2, rows))
    views[0, :before] = recency[:before]
    views[1] = recency
    links = candidates.links
    present = links > 0.0
    conditional = links / np.maximum(candidates.sources, 1e-9)[:, None]
    weighted = recency[:, None] * links
    matrices = np.empty((2, count, len(FEATURES)))
    matrices[:, :, 0] = np.log1p(views @ links)
    matrices[:, :, 1] = (views @ np.minimum(conditional, 1.0)) / np.maximum(
        views.sum(axis=1, keepdims=True), 1e-9
    )
    for view, used in enumerate((before, rows)):
        if used:
            matrices[view, :, 2] = np.log1p(weighted[:used].max(axis=0))
            matrices[view, :, 3] = present[:used].sum(axis=0) / used
            matrices[view, :, 4] = np.log1p(links[used - 1])
        else:
            matrices[view, :, 2:5] = 0.0
    matrices[:, :, 5] = candidates.trend_short
    matrices[:, :, 6] = candidates.trend_long
    matrices[:, :, 7] = candidates.trend_rank
    matrices[:, :, 8] = _category_affinity(header, candidates)
    return matrices[0], matrices[1]


def _category_affinity(header: RankHeader, candidates: Candidates) -> np.ndarray:
    """(2, candidates): the share of interest in each candidate's category, before the window
    and with the window's items added."""
    affinity = np.zeros((2, len(candidates.items)))
    if not any(category is not None for category in candidates.categories):
        return affinity
    profiles = [dict(header.profile)]
    after = dict(profiles[0])
    labels = header.labels
    for item_id, _, weight, category in header.history[header.before :]:
        if category is not None and item_id in labels:
            after[category] = after.get(category, 0.0) + weight
    profiles.append(after)
    for view, profile in enumerate(profiles):
        total = sum(profile.values())
        if total > 0.0:
            affinity[view] = [
                profile.get(category, 0.0) / total if category is not None else 0.0
                for category in candidates.categories
            ]
    return affinity
