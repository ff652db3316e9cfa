"""The recommender's knobs: one frozen dataclass with documented defaults.

The YAML ``engine:`` section is built into this class field by field, so each field below is a
config key. Every cap here is a memory bound: per user ``max(history_cap, seen_cap)`` item ids
(the history's are among the seen ones), per item at most ``2 * neighbours`` links and one pair
of embeddings.

>>> config = EngineConfig()
>>> config.k, config.ranker
(10, 'river')
>>> EngineConfig(ranker="fixed").ranker
'fixed'
>>> config.type_weight("purchase", None, None), config.type_weight("rating", 2, 3.0)
(5.0, 0.5)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from operators.events import DEFAULT_TYPE_WEIGHTS

_DAY_MS = 86_400_000


@dataclass(frozen=True)
class EngineConfig:
    """Parameters of the online recommender (times are event-time milliseconds)."""

    #: Recent (item, ts, weight) entries kept per user, newest last.
    history_cap: int = 50
    #: Distinct items a user interacted with that are excluded from the lists (oldest forgotten).
    seen_cap: int = 1_000
    #: Distinct previous items of the user each event's item is linked to, and the context of
    #: its embedding step. One (links follow the order of a user's events) beat two, three, six
    #: and ten on every stream measured: with the hidden-layer ranker, HR@10 0.2585 -> 0.2814 on
    #: the synthetic ratings stream, 0.2641 -> 0.2866 drift, 0.1502 -> 0.1530 cold-start,
    #: 0.3578 -> 0.3776 sessions, 0.0349 -> 0.0354 Online Retail (3 -> 1). The wider context
    #: still counts at serving time: every one of the 30 recent items brings its neighbours.
    link_recent: int = 1
    #: Distinct recent items of a user a list is built from (their neighbours are candidates).
    query_recent: int = 30
    #: Neighbours kept per item: an item's links are pruned to the strongest ``neighbours``
    #: whenever they exceed ``2 * neighbours``.
    neighbours: int = 40
    #: Strongest links of an item that candidate generation reads, re-sorted by the item after
    #: every ``reply_refresh`` updates.
    reply_neighbours: int = 20
    reply_refresh: int = 8
    #: Half-life of co-occurrence links in event time.
    link_half_life_ms: int = 60 * _DAY_MS
    #: A link between two events of a user is weighted down by the time between them.
    link_gap_half_life_ms: int = 7 * _DAY_MS
    #: Half-lives of the distinct-user popularity (each user counts once per item).
    pop_short_half_life_ms: int = 7 * _DAY_MS
    pop_long_half_life_ms: int = 60 * _DAY_MS
    #: Trending items kept sorted (re-sorted every ``trend_refresh`` events), of which the
    #: ``trend_top`` first are candidates of every list.
    trending: int = 200
    trend_top: int = 100
    trend_refresh: int = 50
    #: Items most similar to the user's interest vector that are candidates of every list,
    #: searched among the ``similar_pool`` items with the most distinct users (long half-life,
    #: re-ranked with the trending items): a list's cost does not grow with the catalog.
    similar: int = 50
    similar_pool: int = 5_000
    #: Most popular items (short half-life) of each category of the user's recent items that
    #: are candidates (content: events name an item's ``category``; none without).
    category_top: int = 20
    #: A history item's weight halves per this much age and per this many newer items.
    recency_half_life_ms: int = 14 * _DAY_MS
    recency_half_life_items: float = 8.0
    #: Item embeddings (False: none, no similarity feature or candidates), their dimensions,
    #: SGD rate, negatives per event and random seed.
    embeddings: bool = True
    dimensions: int = 32
    embedding_rate: float = 0.05
    negatives: int = 5
    seed: int = 0
    #: Candidates ranked per list (those with the most evidence).
    candidates: int = 300
    #: Length of the emitted lists.
    k: int = 10
    #: "river": a linear blend plus a small tanh layer over standardised features, learned
    #: online by River's Adam on a listwise softmax loss, starting from the fixed prior;
    #: "fixed": the prior alone.
    ranker: Literal["river", "fixed"] = "river"
    #: Adam learning rate of the River ranker.
    learning_rate: float = 0.003
    #: Training lists of open windows a replica keeps at most (the oldest is dropped; about 7 KB
    #: each, so 70 MB per replica at the default, whatever the number of users).
    open_lists: int = 10_000
    #: Items with no event for this long are dropped (swept every ``sweep_every`` events).
    item_idle_ms: int = 365 * _DAY_MS
    sweep_every: int = 100_000
    #: A rating weighs ``2 ** ((value - user's mean rating) / rating_spread)`` times its type
    #: weight: ratings below the user's own mean are weak evidence.
    rating_spread: float = 1.0
    #: Weight of one event of each type.
    type_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TYPE_WEIGHTS))
    #: The ``model`` field of emitted lists.
    model_name: str = "streamrec"

    def type_weight(self, event_type: str, value: float | None, mean: float | None) -> float:
        """How much one event says about interest in its item; a rating's ``value`` counts
        against the user's ``mean`` rating so far (None: no rating yet)."""
        weight = self.type_weights.get(event_type, 1.0)
        if event_type == "rating" and value is not None and mean is not None:
            # Clamped so that no rating outweighs ~a billion events (nor overflows a float).
            exponent = min(max((value - mean) / self.rating_spread, -30.0), 30.0)
            return weight * 2.0**exponent
        return weight
