"""Ranking features: one row per candidate, computed in one compiled pass over all candidates.

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

More views of the same evidence, for the ranker's hidden layer to combine: conditional
co-visitation from the newest two and three items alone (``conditional_last2``,
``conditional_last3``: the sequence) and its strongest single source (``conditional_max``),
``cosine_last``, whether any history item links to the candidate and how many do (``linked``,
``linking_items``), ``similarity_last`` (the newest item's input vector against the candidate's
output vector), ``hours_idle`` (log hours since the candidate's last event: is it still
alive?), ``popularity_rank`` (the position by short-term popularity within the list) and
``popularity_rising`` (short minus long popularity: is it on the way up?), ``item_age`` (log
hours since the item's first event: new releases rise and fade), ``category_share`` (the
recency-weighted share of the user's history in the candidate's category) and ``category_rank``
(its position among its category's most popular items, for a category of the history): content,
all zero for items without a category. On the recorded lists
of five streams they added 1 to 5 % HR@10 to a linear ranker and more to the hidden layer; the
prior gives them no weight.

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
from numba import njit

from operators.candidates import Candidates, dot, rank_share
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
    "conditional_last2",
    "conditional_last3",
    "conditional_max",
    "cosine_last",
    "linked",
    "linking_items",
    "similarity_last",
    "hours_idle",
    "popularity_rank",
    "popularity_rising",
    "item_age",
    "category_share",
    "category_rank",
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
    # The signals below start at zero: only learning gives them weight.
    "conditional_last2": 0.0,
    "conditional_last3": 0.0,
    "conditional_max": 0.0,
    "cosine_last": 0.0,
    "linked": 0.0,
    "linking_items": 0.0,
    "similarity_last": 0.0,
    "hours_idle": 0.0,
    "popularity_rank": 0.0,
    "popularity_rising": 0.0,
    "item_age": 0.0,
    "category_share": 0.0,
    "category_rank": 0.0,
}

#: Features that come from the user's history items, by name: their largest contributor is the
#: history item a recommendation is ``because`` of.
COVISITATION = frozenset(
    {
        "covisitation",
        "conditional",
        "cosine",
        "last",
        "spread",
        "conditional_last2",
        "conditional_last3",
        "conditional_max",
        "cosine_last",
        "linked",
        "linking_items",
    }
)
SIMILARITY = frozenset({"similarity", "similarity_last"})
POPULARITY = frozenset(
    {
        "popularity",
        "popularity_long",
        "trend_rank",
        "hours_idle",
        "popularity_rank",
        "popularity_rising",
        "item_age",
    }
)
#: Content: the user's categories.
CATEGORY = frozenset({"category_share", "category_rank"})

_SHARES = np.array(
    [
        FEATURES.index(name)
        for name in (
            "conditional",
            "cosine",
            "last",
            "similarity",
            "conditional_last2",
            "conditional_last3",
            "conditional_max",
            "cosine_last",
            "similarity_last",
        )
    ]
)
_HOUR_MS = 3_600_000


def feature_matrix(model: ItemModel, candidates: Candidates, config: EngineConfig) -> np.ndarray:
    """The (candidates, features) matrix of one list."""
    ts = candidates.ts
    return _matrix(
        candidates.rows,
        candidates.history,
        candidates.recency,
        candidates.links,
        candidates.similarity,
        candidates.trend_rank,
        candidates.category_share,
        candidates.category_rank,
        model.mass,
        model.short,
        model.long,
        model.last_ts,
        model.first_ts,
        model.out,
        model.inp,
        model.decay(ts, config.link_half_life_ms),
        model.decay(ts, config.pop_short_half_life_ms),
        model.decay(ts, config.pop_long_half_life_ms),
        ts,
        config.embeddings,
    )


@njit(
    "float64[:, :](int64[:], int64[:], float64[:], float64[:, :], float64[:], float64[:],"
    " float64[:], float64[:], float64[:], float64[:], float64[:], int64[:], int64[:],"
    " float32[:, :], float32[:, :], float64, float64, float64, int64, boolean)",
    cache=True,
)
def _matrix(
    rows: np.ndarray,
    history: np.ndarray,
    recency: np.ndarray,
    links: np.ndarray,
    similarity: np.ndarray,
    trend_rank: np.ndarray,
    category_share: np.ndarray,
    category_rank: np.ndarray,
    mass: np.ndarray,
    short: np.ndarray,
    long: np.ndarray,
    last_ts: np.ndarray,
    first_ts: np.ndarray,
    out: np.ndarray,
    inp: np.ndarray,
    link_decay: float,
    short_decay: float,
    long_decay: float,
    ts: int,
    embeddings: bool,
) -> np.ndarray:
    """One compiled pass over candidates and history (see :func:`feature_matrix`): about fifty
    numpy calls on a few hundred candidates cost more in calls than in arithmetic."""
    count, width = len(rows), len(history)
    matrix = np.zeros((count, len(FEATURES)))
    # The shares of the history's weight; with none (every event's type weighs nothing), none.
    total = recency.sum() or 1.0
    # Co-visitation, history item by history item over the contiguous rows of ``links`` (read
    # a column at a time, with a stride, the whole pass took a quarter longer on Online
    # Retail's lists); each candidate's sums still add its history items in order.
    raw, conditional, cosine = np.zeros(count), np.zeros(count), np.zeros(count)
    spread, linking, strongest = np.zeros(count), np.zeros(count), np.zeros(count)
    last2, last3 = np.zeros(count), np.zeros(count)
    for index in range(width):
        source_mass = max(mass[history[index]], 1e-12)
        source_root = np.sqrt(source_mass)
        weight_of_source = recency[index]
        for column in range(count):
            weight = links[index, column]
            if weight == 0.0:  # links are never negative
                continue
            share = weight / source_mass
            raw[column] += weight_of_source * weight
            conditional[column] += weight_of_source * share
            cosine[column] += weight_of_source * weight / source_root
            spread[column] += weight_of_source
            linking[column] += 1.0
            strongest[column] = max(strongest[column], share)
            if index >= width - 2:
                last2[column] += share
            if index >= width - 3:
                last3[column] += share
    newest = inp[history[-1]] if width else inp[0]
    newest_mass = max(mass[history[-1]], 1e-12) if width else 1.0
    for column in range(count):
        row = rows[column]
        features = matrix[column]
        if width:
            target_root = np.sqrt(max(mass[row], 1e-12))
            last = links[width - 1, column]
            features[0] = np.log1p(raw[column] / link_decay)
            features[1] = conditional[column] / total
            features[2] = cosine[column] / target_root / total
            features[3] = last / newest_mass
            features[4] = spread[column] / total
            features[9] = last2[column] / min(width, 2)
            features[10] = last3[column] / min(width, 3)
            features[11] = strongest[column]
            features[12] = last / (np.sqrt(newest_mass) * target_root)
            features[13] = 1.0 if linking[column] > 0 else 0.0
            features[14] = linking[column]
            if embeddings:
                features[5] = similarity[column]
                features[15] = dot(out[row], newest)
        features[6] = np.log1p(short[row] / short_decay)
        features[7] = np.log1p(long[row] / long_decay)
        features[8] = trend_rank[column]
        features[16] = np.log1p(max(ts - last_ts[row], 0) / _HOUR_MS)
        features[18] = features[6] - features[7]
        features[19] = np.log1p(max(ts - first_ts[row], 0) / _HOUR_MS)
        features[20] = category_share[column]
        features[21] = category_rank[column]
    matrix[:, 17] = rank_share(matrix[:, 6].copy())
    # Each share feature over the list's largest in magnitude, in one pass each way.
    largest = np.zeros(len(_SHARES))
    for column in range(count):
        for position in range(len(_SHARES)):
            largest[position] = max(largest[position], abs(matrix[column, _SHARES[position]]))
    for column in range(count):
        for position in range(len(_SHARES)):
            if largest[position] > 0:
                matrix[column, _SHARES[position]] /= largest[position]
    return matrix
