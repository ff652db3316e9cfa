"""A synthetic event stream with known structure, for tests, benchmarks and drift experiments.

The structure a recommender can find (and that the generator knows, so tests can check it):

- **Categories and popularity.** Items belong to categories; categories and the items within
  each category have Zipf popularity.
- **Tastes.** Each user likes a mixture of a few categories (drawn by category popularity) and
  sometimes explores any category.
- **Sessions.** A user's events come in sessions: bursts of item visits seconds apart, with long
  gaps between sessions. Heavy users have many sessions, most have few.
- **Transitions.** Each item has a few likely successors (mostly in its category); within a
  session the next visit often follows one, so co-visitation carries signal.
- **Funnel.** A visit is a ``view``, sometimes followed by ``click``, ``cart`` and ``purchase``
  of the same item.
- **Arrivals.** Some items are released and some users start during the stream (cold starts).
- **Trends.** A few items have a burst: for a while they take a rising, then falling, share of
  all fresh picks.
- **Drift.** At :func:`drift_timestamp` a ``drift_share`` of users switch to other categories.

Optional mechanisms, off unless a config turns them on: ``ratings`` (each visit is one
``rating`` with a 1-5 value instead of a funnel), ``once`` (a user meets an item at most once),
``peak_days`` (an item's pull peaks shortly after its release, then fades), ``sequels`` (new items
become the first successor of an earlier item of their category), ``drift_successors`` (the
successors change at the drift point too), ``session_min`` (least visits per session) and
``tie`` (a share of visits with the previous visit's timestamp).

**Shapes** are presets of these parameters (:data:`SHAPES`, :func:`shape_config`), each
testing something the others do not:

- ``sessions`` (the default): the shop stream above. Short sessions, a funnel whose purchases
  weigh more than views, mild drift: tests sequence-aware, category-aware ranking.
- ``ratings``: like MovieLens 100k (about 900 users rating 1,700 items, 100,000 ratings over
  7 months). Each user rates an item once, with a value around the user's personal mean and
  the item's quality, low outside the user's taste; sittings of about 5-35 ratings seconds
  apart (a fifth sharing the previous one's timestamp); long histories (median about 85);
  strong successors with sequels (franchises); and popularity peaking two weeks after
  release. Tests long profiles, ratings as feedback and whole baskets scored against one list.
- ``drift``: the shop stream where 80 % of users switch taste mid-stream and every item's
  successors change: tests how fast a model forgets and recovers.
- ``cold-start``: 90 % of users arrive during the stream and most have at most 5 events; 70 %
  of items are released during it, peak 3 days later and fade, and most arrive as sequels of
  items popular at the time, so their first visits come by co-occurrence: tests lists for
  short histories and new items brought in before they are popular.

Everything is drawn with one ``numpy`` Generator from ``seed``, so a config always gives the
same stream. Timestamps are epoch ms from 2024-01-01 UTC.

>>> config = GeneratorConfig(users=50, items=40, events=200, seed=1, categories=4)
>>> lines = list(iter_lines(config))
>>> len(lines), lines == list(iter_lines(config))
(200, True)
>>> from operators.events import parse_event
>>> event = parse_event(lines[0])
>>> event.type, event.category == event.title.split()[0]
('view', True)
>>> drift_timestamp(config)  # halfway through 30 days
1705363200000
>>> ratings = shape_config("ratings", users=50, items=200, events=500)
>>> event = parse_event(next(iter_lines(ratings)))
>>> event.type, event.value in {1.0, 2.0, 3.0, 4.0, 5.0}
('rating', True)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from operators import jsonl

#: Event types by funnel stage; :attr:`SyntheticStream.type` holds indexes into this.
EVENT_TYPES = ("view", "click", "cart", "purchase")
#: The type of every event of a ratings stream.
RATING = "rating"
START_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z
_DAY_MS = 86_400_000
_MAX_VISITS = 50  # per session; bounds the sequential pass over positions
_CHUNK = 65_536  # events serialised per batch
_PULL_FLOOR = 0.05  # of an item's peak pull, before and long after the peak
_MAX_PULL_SLICES = 256  # time slices of the changing popularity, each with its own weights
_ONCE_ATTEMPTS = 6


@dataclass(frozen=True)
class RatingScale:
    """How an integer 1-5 rating is drawn: ``mean`` shifted by the user's personal mean, the
    item's quality (both normal), ``off_taste`` for an item outside the user's taste categories,
    and noise; then rounded."""

    mean: float = 4.0
    user_sd: float = 0.45
    item_sd: float = 0.45
    off_taste: float = -1.6
    noise_sd: float = 0.8


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Shares are probabilities in [0, 1]."""

    users: int = 2_000
    items: int = 1_000
    events: int = 100_000
    seed: int = 0
    #: Where the drift happens, as a fraction of the stream's time span.
    drift_at: float = 0.5
    #: Share of users whose taste changes at the drift point.
    drift_share: float = 0.5
    #: Whether every item's successors are drawn anew at the drift point.
    drift_successors: bool = False
    categories: int = 20
    days: float = 30.0
    #: Categories in one user's taste mixture.
    tastes: int = 3
    #: Share of fresh picks from any category (by category popularity) instead of the taste.
    explore: float = 0.1
    item_zipf: float = 1.0
    category_zipf: float = 0.8
    #: Mean and least item visits per session.
    session_visits: float = 5.0
    session_min: int = 1
    #: Mean seconds between visits in a session, and between funnel steps of one visit.
    visit_gap_s: float = 40.0
    step_gap_s: float = 10.0
    #: Share of visits with the same timestamp as the one before in their session.
    tie: float = 0.0
    #: Likely successors per item, and how often a visit follows one of the previous item's.
    successors: int = 3
    follow: float = 0.5
    #: Share of items released during the stream that become the first successor of a
    #: popular earlier item of their category.
    sequels: float = 0.0
    #: Share of items released, and of users starting, after the stream's start.
    new_items: float = 0.3
    new_users: float = 0.3
    #: Days from an item's release to its peak pull, after which it fades (0: constant pull).
    peak_days: float = 0.0
    trends: int = 10
    #: Length of one trend burst, and the share of fresh picks it takes at its peak.
    trend_days: float = 3.0
    trend_share: float = 0.2
    #: Funnel: P(click | view), P(cart | click), P(purchase | cart).
    funnel: tuple[float, float, float] = (0.35, 0.3, 0.4)
    #: Each visit is one rating drawn by this scale instead of funnel steps.
    ratings: RatingScale | None = None
    #: Whether a user meets an item at most once (later visits of it are dropped).
    once: bool = False

    def __post_init__(self) -> None:
        if self.users < 1 or self.items < 1 or self.events < 0:
            raise ValueError("users and items must be at least 1, events at least 0")
        if not 2 <= self.categories <= self.items:
            raise ValueError(f"categories must be between 2 and items ({self.items})")
        if self.tastes < 1 or self.successors < 1 or self.trends < 0:
            raise ValueError("tastes and successors must be at least 1, trends at least 0")
        if self.days <= 0 or self.session_visits < 1 or not 0 < self.trend_days <= self.days:
            raise ValueError("days > 0, session_visits >= 1 and 0 < trend_days <= days needed")
        if not 1 <= self.session_min <= min(self.session_visits, _MAX_VISITS):
            raise ValueError(f"session_min must be in 1..session_visits (at most {_MAX_VISITS})")
        if self.peak_days < 0:
            raise ValueError(f"peak_days must be at least 0, got {self.peak_days}")
        if self.once and self.events > self.users * self.items:
            raise ValueError("once: events cannot exceed users x items")
        shares = {
            "drift_at": self.drift_at,
            "drift_share": self.drift_share,
            "explore": self.explore,
            "tie": self.tie,
            "follow": self.follow,
            "sequels": self.sequels,
            "new_items": self.new_items,
            "new_users": self.new_users,
            "trend_share": self.trend_share,
            **{f"funnel[{n}]": p for n, p in enumerate(self.funnel)},
        }
        for name, share in shares.items():
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, got {share}")

    @property
    def span_ms(self) -> int:
        return round(self.days * _DAY_MS)


#: Named streams as changes to :class:`GeneratorConfig`'s defaults (see the module docstring).
SHAPES: dict[str, dict[str, Any]] = {
    "sessions": {},
    "ratings": {
        "users": 1_200,
        "items": 1_700,
        "events": 100_000,
        "categories": 19,
        "days": 210.0,
        "tastes": 4,
        "explore": 0.2,
        "item_zipf": 0.6,
        # Repeats are dropped, which leaves sittings of about 5-35 ratings.
        "session_visits": 40.0,
        "session_min": 12,
        "visit_gap_s": 15.0,
        "tie": 0.2,
        "successors": 2,
        "follow": 0.6,
        "sequels": 0.5,
        "new_users": 0.5,
        "peak_days": 14.0,
        "trends": 0,
        "ratings": RatingScale(),
        "once": True,
    },
    "drift": {
        "users": 10_000,
        "items": 3_000,
        "events": 200_000,
        "drift_share": 0.8,
        "drift_successors": True,
    },
    "cold-start": {
        "users": 200_000,
        "items": 5_000,
        "events": 200_000,
        "session_visits": 2.5,
        "session_min": 2,
        "follow": 0.7,
        "sequels": 0.8,
        "new_items": 0.7,
        "new_users": 0.9,
        "peak_days": 3.0,
    },
}


def shape_config(shape: str, **fields: Any) -> GeneratorConfig:
    """The config of a named shape; ``fields`` override the shape's own values."""
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r} (known: {', '.join(SHAPES)})")
    return GeneratorConfig(**{**SHAPES[shape], **fields})


def drift_timestamp(config: GeneratorConfig) -> int:
    """Epoch ms from which drifting users' sessions follow their new taste."""
    return START_MS + round(config.drift_at * config.span_ms)


@dataclass(frozen=True)
class SyntheticStream:
    """The generated events as columns in time order, with the ground truth behind them."""

    user: np.ndarray  # int32 per event
    item: np.ndarray  # int32 per event
    ts: np.ndarray  # int64 epoch ms per event, non-decreasing
    type: np.ndarray  # int8 per event, index into EVENT_TYPES (0 in a ratings stream)
    value: np.ndarray | None  # int8 per event, 1-5, in a ratings stream
    session: np.ndarray  # int32 per event
    item_category: np.ndarray  # per item
    item_release: np.ndarray  # per item, epoch ms
    successors: np.ndarray  # items x config.successors, before the drift
    drifted_successors: np.ndarray  # from the drift on (the same table unless they change)
    user_start: np.ndarray  # per user, epoch ms
    drifting: np.ndarray  # bool per user
    drift_ts: int
    trend_item: np.ndarray  # per trend burst
    trend_start: np.ndarray  # per trend burst, epoch ms; it lasts config.trend_days


class _Sampler:
    """Draws items of given categories by popularity among those released by a given time.

    ``weight`` is per item, or one row per item for each time slice of ``slice_ms``."""

    def __init__(
        self, category: np.ndarray, release: np.ndarray, weight: np.ndarray, slice_ms: int = 1
    ) -> None:
        weight = np.atleast_2d(weight)
        self._stride = int(release.max()) + 1
        key = category.astype(np.int64) * self._stride + release
        self._order = np.argsort(key, kind="stable")
        self._key = key[self._order]
        # One running sum over the rows: slice r's items are the r-th stretch of len(order).
        self._cumulative = np.concatenate([[0.0], np.cumsum(weight[:, self._order])])
        self._first = np.searchsorted(self._key, np.arange(category.max() + 1) * self._stride)
        self._slices = len(weight)
        self._slice_ms = slice_ms

    def draw(self, rng: np.random.Generator, category: np.ndarray, at: np.ndarray) -> np.ndarray:
        category = category.astype(np.int64, copy=False)
        base = np.minimum(at // self._slice_ms, self._slices - 1) * len(self._order)
        lo = base + self._first[category]
        # Every category has an item released at 0, so hi > lo.
        hi = base + np.searchsorted(
            self._key, category * self._stride + np.minimum(at, self._stride - 1), side="right"
        )
        low_mass = self._cumulative[lo]
        target = low_mass + rng.random(len(category)) * (self._cumulative[hi] - low_mass)
        index = np.clip(np.searchsorted(self._cumulative, target, side="right") - 1, lo, hi - 1)
        return self._order[index - base]


def _zipf(n: int, exponent: float) -> np.ndarray:
    return 1.0 / np.arange(1, n + 1) ** exponent


def _pick(rng: np.random.Generator, cumulative: np.ndarray) -> np.ndarray:
    """One column index per row, by the row's cumulative probabilities (last column ~ 1)."""
    u = rng.random(len(cumulative)) * cumulative[:, -1]
    return (u[:, None] >= cumulative).sum(axis=1).clip(max=cumulative.shape[1] - 1)


def _aging_sampler(
    rng: np.random.Generator,
    config: GeneratorConfig,
    sampler_args: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> _Sampler:
    """A sampler whose item weights rise to a peak ``peak_days`` after release, then fade; the
    items present at the start were released as steadily over as many days before it."""
    category, release, weight = sampler_args
    span = config.span_ms
    born = np.where(release > 0, release, -rng.integers(0, span, len(release)))
    slices = min(_MAX_PULL_SLICES, math.ceil(4 * config.days / config.peak_days))
    slice_ms = math.ceil(span / slices)
    middle = (np.arange(slices) + 0.5) * slice_ms
    age = np.clip(middle[:, None] - born[None, :], 0, None) / (config.peak_days * _DAY_MS)
    pull = _PULL_FLOOR + age * np.exp(1.0 - age)
    return _Sampler(category, release, weight * pull, slice_ms)


def _successor_table(
    rng: np.random.Generator,
    config: GeneratorConfig,
    sampler: _Sampler,
    fresh_sampler: _Sampler,
    item_category: np.ndarray,
    item_release: np.ndarray,
    category_cumulative: np.ndarray,
) -> np.ndarray:
    """Mostly popular items of the same category, never the item itself; then the sequels,
    each of an item of its category popular when the sequel is released."""
    n_items, k, span = config.items, config.successors, config.span_ms
    successor_category = np.where(
        rng.random((n_items, k)) < 0.8,
        item_category[:, None],
        np.searchsorted(category_cumulative, rng.random((n_items, k)) * category_cumulative[-1]),
    ).ravel()
    successors = sampler.draw(rng, successor_category, np.full(n_items * k, span))
    successors = successors.reshape(n_items, k)
    for _ in range(3):
        own = successors == np.arange(n_items)[:, None]
        if not own.any():
            break
        successors[own] = sampler.draw(
            rng, successor_category.reshape(n_items, k)[own], np.full(own.sum(), span)
        )
    if config.sequels:
        sequel = np.flatnonzero((item_release > 0) & (rng.random(n_items) < config.sequels))
        sequel = sequel[np.argsort(item_release[sequel], kind="stable")]
        # Released strictly before its sequel, so never the sequel itself.
        predecessor = fresh_sampler.draw(rng, item_category[sequel], item_release[sequel] - 1)
        for item, before in zip(sequel.tolist(), predecessor.tolist(), strict=True):
            successors[before, 1:] = successors[before, :-1]
            successors[before, 0] = item
    return successors


def generate(config: GeneratorConfig) -> SyntheticStream:
    """The whole stream as columns: 21 bytes per event (generating takes ~10 times that)."""
    budget = config.events
    for _ in range(_ONCE_ATTEMPTS):
        stream = _generate(config, budget)
        if len(stream.ts) == config.events:
            return stream
        # `once` dropped repeats: draw more sessions, in proportion to the share kept.
        budget = math.ceil(budget * config.events / max(len(stream.ts), 1) * 1.1)
    raise ValueError(f"once: {config.events} events need more users or items")


def _generate(config: GeneratorConfig, budget: int) -> SyntheticStream:
    """The stream from sessions of ``budget`` events before ``once`` drops repeats."""
    rng = np.random.default_rng(config.seed)
    span = config.span_ms
    n_items, n_users, n_categories = config.items, config.users, config.categories

    # Items: categories of even size, Zipf popularity by a random rank within the category.
    item_category = rng.permutation(np.arange(n_items) % n_categories).astype(np.int32)
    by_category = np.lexsort((rng.random(n_items), item_category))
    rank = np.empty(n_items, dtype=np.int64)
    first_of_category = np.searchsorted(item_category[by_category], np.arange(n_categories))
    rank[by_category] = np.arange(n_items) - np.repeat(
        first_of_category, np.bincount(item_category, minlength=n_categories)
    )
    item_weight = 1.0 / (rank + 1.0) ** config.item_zipf
    item_release = np.where(
        rng.random(n_items) < config.new_items, rng.integers(0, span, n_items), 0
    )
    item_release[by_category[first_of_category]] = 0  # every category starts with an item
    sampler = _Sampler(item_category, item_release, item_weight)
    category_weight = _zipf(n_categories, config.category_zipf)
    category_cumulative = np.cumsum(category_weight / category_weight.sum())

    fresh_sampler = (
        _aging_sampler(rng, config, (item_category, item_release, item_weight))
        if config.peak_days
        else sampler
    )
    table = (rng, config, sampler, fresh_sampler, item_category, item_release, category_cumulative)
    successors = _successor_table(*table)
    drifted_successors = _successor_table(*table) if config.drift_successors else successors
    k = config.successors
    successor_cumulative = np.cumsum(_zipf(k, 1.0))

    # Users: heavy-tailed activity, start times, taste mixtures, drift.
    activity = rng.lognormal(0.0, 1.0, n_users)
    user_start = np.where(rng.random(n_users) < config.new_users, rng.integers(0, span, n_users), 0)
    user_start[0] = 0
    by_start = np.argsort(user_start, kind="stable")
    activity_cumulative = np.cumsum(activity[by_start])
    taste = np.searchsorted(
        category_cumulative, rng.random((n_users, config.tastes)) * category_cumulative[-1]
    ).astype(np.int32)
    taste_cumulative = np.cumsum(rng.gamma(1.0, size=(n_users, config.tastes)), axis=1)
    drifting = rng.random(n_users) < config.drift_share
    shift = rng.integers(1, n_categories, n_users)[:, None]
    new_taste = ((taste + shift) % n_categories).astype(np.int32)
    drift_at = round(config.drift_at * span)

    # Sessions: visits per session and funnel depth per visit, until there are enough events.
    funnel_cumprod = np.zeros(3) if config.ratings else np.cumprod(config.funnel)
    visits_parts: list[np.ndarray] = []
    depth_parts: list[np.ndarray] = []
    total = 0
    events_per_visit = 1.0 + funnel_cumprod.sum()
    extra_visits = config.session_visits - config.session_min + 1
    while total < budget:
        n = max(64, math.ceil((budget - total) / events_per_visit / config.session_visits * 1.05))
        visits = config.session_min - 1 + rng.geometric(1.0 / extra_visits, n)
        visits = np.minimum(visits, _MAX_VISITS)
        depth = 1 + (rng.random((int(visits.sum()), 1)) < funnel_cumprod).sum(axis=1)
        visits_parts.append(visits)
        depth_parts.append(depth)
        total += int(depth.sum())
    visits = np.concatenate(visits_parts) if visits_parts else np.zeros(0, dtype=np.int64)
    depth = np.concatenate(depth_parts) if depth_parts else np.zeros(0, dtype=np.int64)
    n_sessions = len(visits)
    session_start = np.sort(rng.integers(0, span, n_sessions))
    eligible = np.searchsorted(user_start[by_start], session_start, side="right")
    session_user = by_start[
        np.searchsorted(
            activity_cumulative,
            rng.random(n_sessions) * activity_cumulative[eligible - 1],
            side="right",
        ).clip(max=eligible - 1)
    ]

    # Fresh picks per visit: a taste category (the new one after drift) or an explored one.
    visit_session = np.repeat(np.arange(n_sessions), visits)
    visit_user = session_user[visit_session]
    visit_at = session_start[visit_session]
    component = _pick(rng, taste_cumulative[visit_user])
    drifted = drifting[visit_user] & (visit_at >= drift_at)
    category = np.where(drifted, new_taste[visit_user, component], taste[visit_user, component])
    explored = rng.random(len(visit_user)) < config.explore
    category[explored] = np.searchsorted(
        category_cumulative, rng.random(int(explored.sum())) * category_cumulative[-1]
    )
    item = fresh_sampler.draw(rng, category, visit_at)
    trend_length = round(config.trend_days * _DAY_MS)
    trend_items = rng.integers(0, n_items, config.trends)
    latest = np.maximum(item_release[trend_items], span - trend_length)
    trend_start = rng.integers(item_release[trend_items], latest + 1)
    for trend_item, start in zip(trend_items, trend_start, strict=True):
        distance = np.abs(visit_at - (start + trend_length / 2)) / (trend_length / 2)
        boosted = rng.random(len(item)) < config.trend_share * np.clip(1 - distance, 0, None)
        item[boosted] = trend_item

    # Transitions: position by position, a visit may follow a successor of the previous item.
    follows = rng.random(len(item)) < config.follow
    choice = _pick(rng, np.broadcast_to(successor_cumulative, (len(item), k)))
    first_visit = np.cumsum(visits) - visits
    for position in range(1, int(visits.max(initial=0))):
        index = first_visit[visits > position] + position
        previous, slot = item[index - 1], choice[index]
        successor = np.where(
            visit_at[index] >= drift_at,
            drifted_successors[previous, slot],
            successors[previous, slot],
        )
        take = follows[index] & (item_release[successor] <= visit_at[index])
        item[index[take]] = successor[take]

    if config.once:
        pair = visit_user.astype(np.int64) * n_items + item
        met = np.sort(np.unique(pair, return_index=True)[1])
        item, depth, visit_session = item[met], depth[met], visit_session[met]
        visit_user, visit_at, drifted = visit_user[met], visit_at[met], drifted[met]

    # Events: each visit's funnel steps, seconds apart; visits further apart.
    event_visit = np.repeat(np.arange(len(item)), depth)
    step = np.arange(len(event_visit)) - np.repeat(np.cumsum(depth) - depth, depth)
    gap = np.where(
        step == 0,
        rng.exponential(config.visit_gap_s * 1000, len(event_visit)),
        rng.exponential(config.step_gap_s * 1000, len(event_visit)),
    ).astype(np.int64)
    if config.tie:
        gap[(step == 0) & (rng.random(len(gap)) < config.tie)] = 0
    event_session = visit_session[event_visit]
    first_event = np.searchsorted(event_session, event_session)  # of the event's session
    gap[first_event] = 0
    elapsed = np.cumsum(gap)
    ts = START_MS + session_start[event_session] + elapsed - elapsed[first_event]
    keep = slice(0, config.events)
    order = np.argsort(ts[keep], kind="stable")
    value = None
    if config.ratings:
        current_taste = np.where(drifted[:, None], new_taste[visit_user], taste[visit_user])
        liked = (current_taste == item_category[item][:, None]).any(axis=1)
        visit_value = _rating_values(rng, config.ratings, n_users, n_items, visit_user, item, liked)
        value = visit_value[event_visit][keep][order]
    return SyntheticStream(
        user=session_user[event_session][keep][order].astype(np.int32),
        item=item[event_visit][keep][order].astype(np.int32),
        ts=ts[keep][order],
        type=step[keep][order].astype(np.int8),
        value=value,
        session=event_session[keep][order].astype(np.int32),
        item_category=item_category,
        item_release=START_MS + item_release,
        successors=successors,
        drifted_successors=drifted_successors,
        user_start=START_MS + user_start,
        drifting=drifting,
        drift_ts=START_MS + drift_at,
        trend_item=trend_items,
        trend_start=START_MS + trend_start,
    )


def _rating_values(
    rng: np.random.Generator,
    scale: RatingScale,
    n_users: int,
    n_items: int,
    user: np.ndarray,
    item: np.ndarray,
    liked: np.ndarray,
) -> np.ndarray:
    """One 1-5 rating per visit of ``user`` to ``item`` (``liked``: in the user's taste)."""
    user_mean = rng.normal(0.0, scale.user_sd, n_users)
    quality = rng.normal(0.0, scale.item_sd, n_items)
    raw = scale.mean + user_mean[user] + quality[item] + np.where(liked, 0.0, scale.off_taste)
    raw += rng.normal(0.0, scale.noise_sd, len(user))
    return np.clip(np.rint(raw), 1, 5).astype(np.int8)


def lines(stream: SyntheticStream) -> Iterator[bytes]:
    """The stream's events as JSON (one ``bytes`` per event, no line break)."""
    categories = [f"cat{c}" for c in stream.item_category.tolist()]
    types = EVENT_TYPES if stream.value is None else (RATING,)
    for begin in range(0, len(stream.ts), _CHUNK):
        chunk = slice(begin, begin + _CHUNK)
        values: Iterable[int | None] = (
            repeat(None) if stream.value is None else stream.value[chunk].tolist()
        )
        columns = zip(
            stream.user[chunk].tolist(),
            stream.item[chunk].tolist(),
            stream.ts[chunk].tolist(),
            stream.type[chunk].tolist(),
            values,
            range(begin, begin + _CHUNK),
            strict=False,
        )
        for user, item, ts, step, value, number in columns:
            category = categories[item]
            record: dict[str, Any] = {
                "user_id": f"u{user}",
                "item_id": f"i{item}",
                "ts": ts,
                "type": types[step],
            }
            if value is not None:
                record["value"] = value
            record["event_id"] = f"e{number}"
            record["title"] = f"{category} item {item}"
            record["category"] = category
            yield orjson.dumps(record)


def iter_lines(config: GeneratorConfig) -> Iterator[bytes]:
    """The stream ``config`` describes, as JSON lines (without line breaks)."""
    return lines(generate(config))


def write_stream(
    config: GeneratorConfig,
    path: Path,
    track: Callable[[Iterable[bytes]], Iterable[bytes]] = iter,
) -> int:
    """Write the stream to ``path`` (JSON Lines, ``.gz`` compresses); returns the event count.
    ``track`` sees the lines as they are written (a progress bar)."""
    return jsonl.write_jsonl(path, track(iter_lines(config)))
