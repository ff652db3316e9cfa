"""Ranking features: one row per candidate, computed with numpy over all candidates at once.

Co-visitation in three normalisations (each history item's links weighted by its recency):
``covisitation`` (log of the raw decayed weight), ``conditional`` (divided by the source item's
own link mass: how often the candidate follows it), ``cosine`` (divided by the geometric mean of
both items' masses), plus ``last`` (conditional on the newest item alone) and ``spread`` (the
share of history items linking to it). ``conditional``, ``cosine`` and ``last`` are shares of
the list's best (in [0, 1], as co-visitation baselines scale their scores): raw, they are
heavy-tailed, a few candidates lay tens of standard deviations out and the listwise softmax
learned to shun them (on the cold-start stream the weight of ``last`` fell from 0.3 to 0.03,
and HR@10 was 0.131 against 0.137 with shares).

``similarity`` is the dot product of the user's interest vector with the candidate's output
vector, divided by the list's largest in magnitude (the interest vector's length varies from
user to user; as a share, cold-start HR@10 rose from 0.138 to 0.140).
``popularity``/``popularity_long`` are the log of the distinct-user counts at the short and long
half-life, ``trend_rank`` the position among the trending items.

>>> from operators.item_model import ItemModel, Observation
>>> from operators.candidates import gather
>>> config = EngineConfig(dimensions=4)
>>> model = ItemModel(config)
>>> for item, ts, recent in [("tea", 0, ()), ("jam", 1, (("tea", 0, 1.0),)), ("cup", 2, ())]:
...     model.observe(Observation(item, ts, 1.0, True, recent))
>>> candidates = gather(model, (("tea", 3, 1.0),), {"tea"}, config)
>>> matrix = feature_matrix(model, candidates, config)
>>> matrix.shape == (2, len(FEATURES))
True
>>> jam = [model.ids[row] for row in candidates.rows].index("jam")
>>> float(matrix[jam, FEATURES.index("conditional")])
1.0
"""

from __future__ import annotations

import numpy as np

from operators.candidates import Candidates
from operators.engine_config import EngineConfig
from operators.item_model import ItemModel

FEATURES: tuple[str, ...] = (
    "covisitation",
    "conditional",
    "cosine",
    "last",
    "spread",
    "similarity",
    "popularity",
    "popularity_long",
    "trend_rank",
)

#: The fixed prior over standardised features: where the learned ranker starts, and the
#: "fixed" ranker of the ablation.
FIXED_WEIGHTS: dict[str, float] = {
    "covisitation": 0.3,
    "conditional": 0.6,
    "cosine": 0.3,
    "last": 0.3,
    "spread": 0.1,
    "similarity": 0.3,
    "popularity": 0.6,
    "popularity_long": 0.1,
    "trend_rank": 0.1,
}

#: Features that come from the user's history items, by name: their largest contributor is the
#: history item a recommendation is ``because`` of.
COVISITATION = frozenset({"covisitation", "conditional", "cosine", "last", "spread"})
POPULARITY = frozenset({"popularity", "popularity_long", "trend_rank"})


_SHARES = [FEATURES.index(name) for name in ("conditional", "cosine", "last", "similarity")]


def feature_matrix(model: ItemModel, candidates: Candidates, config: EngineConfig) -> np.ndarray:
    """The (candidates, features) matrix of one list."""
    rows = candidates.rows
    matrix = np.zeros((len(rows), len(FEATURES)))
    links = candidates.links
    recency = candidates.recency
    if len(candidates.history):
        total = recency.sum()
        source_mass = np.maximum(model.mass[candidates.history], 1e-12)
        target_mass = np.maximum(model.mass[rows], 1e-12)
        decay = model.decay(candidates.ts, config.link_half_life_ms)
        conditional = links / source_mass[:, None]
        matrix[:, 0] = np.log1p((recency @ links) / decay)
        matrix[:, 1] = (recency @ conditional) / total
        matrix[:, 2] = (
            recency @ (conditional * np.sqrt(source_mass[:, None] / target_mass))
        ) / total
        matrix[:, 3] = conditional[-1]
        matrix[:, 4] = (recency @ (links > 0)) / total
        if config.embeddings:
            matrix[:, 5] = model.out[rows] @ candidates.interest
    matrix[:, 6] = np.log1p(
        model.short[rows] / model.decay(candidates.ts, config.pop_short_half_life_ms)
    )
    matrix[:, 7] = np.log1p(
        model.long[rows] / model.decay(candidates.ts, config.pop_long_half_life_ms)
    )
    matrix[:, 8] = candidates.trend_rank
    best = np.abs(matrix[:, _SHARES]).max(axis=0, initial=0.0)
    matrix[:, _SHARES] /= np.where(best > 0, best, 1.0)
    return matrix
