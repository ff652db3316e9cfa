"""The recommender's knobs: one frozen dataclass with documented defaults.

The YAML ``engine:`` section is built into this class field by field, so each field below is a
config key. Every cap here is a memory bound: per user ``history_cap + seen_cap`` item ids, per
item at most ``2 * neighbours`` links, in the trend step at most ``2 * trend_capacity`` items.

>>> config = EngineConfig()
>>> config.k, config.shards, config.ranker
(10, 8, 'river')
>>> EngineConfig(ranker="fixed").ranker
'fixed'
>>> config.type_weight("purchase", None)
5.0
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
    #: Distinct recent items of a user each event's item is linked to: one message to an item
    #: key each, per event, so this is the main cost knob. Few is also better: on Online Retail
    #: and the synthetic stream, links to the 2 previous items beat links to 8 or 16.
    link_recent: int = 2
    #: Distinct recent items whose neighbours a request gathers (one message each, per request:
    #: the event opening a window and the window's close).
    query_recent: int = 30
    #: Neighbours kept per item: an item's links are pruned to the strongest ``neighbours``
    #: whenever they exceed ``2 * neighbours``.
    neighbours: int = 40
    #: Strongest links an item sends per reply (so a request gathers at most
    #: ``query_recent * reply_neighbours + trend_top`` candidates), re-sorted by the item after
    #: every ``reply_refresh`` updates.
    reply_neighbours: int = 20
    reply_refresh: int = 8
    #: Half-life of co-occurrence links and item popularity in event time.
    link_half_life_ms: int = 60 * _DAY_MS
    #: A link between two events of a user is weighted down by the time between them.
    link_gap_half_life_ms: int = 7 * _DAY_MS
    #: Half-lives of the trend step's short and long global popularity.
    trend_short_half_life_ms: int = 2 * _DAY_MS
    trend_long_half_life_ms: int = 30 * _DAY_MS
    #: Items the trend step tracks (pruned to this many by long popularity above twice as many).
    trend_capacity: int = 2_000
    #: Trending items sent with each request (cold-start fallback and popularity features).
    trend_top: int = 200
    #: The trend step re-sorts its top list after this many updates.
    trend_refresh: int = 50
    #: Half-life of a history item's weight in the features.
    recency_half_life_ms: int = 14 * _DAY_MS
    #: Half-life of a user's category interest profile.
    profile_half_life_ms: int = 30 * _DAY_MS
    #: Categories kept in a user's profile.
    profile_cap: int = 20
    #: Candidates ranked per request (the strongest by co-occurrence, then trending ones).
    candidates: int = 300
    #: Length of the emitted lists.
    k: int = 10
    #: Rank shards (the rank step's keys); independent of the number of workers.
    shards: int = 8
    #: "river": linear weights learned online by a River SGD optimiser on a listwise softmax
    #: loss, starting from the fixed blend; "fixed": the hand-set blend of the same features.
    ranker: Literal["river", "fixed"] = "river"
    #: SGD learning rate of the River ranker.
    learning_rate: float = 0.001
    #: Users and items with no event for this long may be dropped (event time).
    idle_ms: int = 365 * _DAY_MS
    #: Weight of one event of each type (a rating's value scales its type weight).
    type_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TYPE_WEIGHTS))
    #: The ``model`` field of emitted lists.
    model_name: str = "streamrec"

    def type_weight(self, event_type: str, value: float | None) -> float:
        """How much one event says about interest in its item."""
        weight = self.type_weights.get(event_type, 1.0)
        if event_type == "rating" and value is not None:
            return weight * value
        return weight
