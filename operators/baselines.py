"""Honest baselines for the prequential evaluation, each an ``OnlineRecommender``.

* :class:`Popularity`: all-time event counts, or with ``half_life_events`` exponentially decayed
  counts (an event ``h`` events ago weighs half as much as the newest one).
* :class:`WindowPopularity`: the items most users came to in the last ``days`` of event time;
  a user counts once per item, at the first interaction with it.
* :class:`Covisitation`: co-occurrence counts between an event's item and the user's last
  ``history`` distinct items; a user's list sums, over the user's own last items, the
  (optionally recency-weighted) normalised counts, plus a little windowed popularity.
  :func:`covisitation_grid` builds a small fixed grid of variants that share their counting.
  With ``content_weight``, items of the categories of the user's last items (events may name
  an item's ``category``) rise with the user's share in their category times their popularity.
* :class:`BPR`: online Bayesian personalised ranking (Rendle et al. 2009) matrix factorisation,
  one SGD step per event against a few sampled unseen items.
* :class:`ISGD`: incremental matrix factorisation for positive-only feedback (Vinagre, Jorge &
  Gama 2014, "Fast incremental matrix factorization for recommendation with positive-only
  feedback"): one SGD step towards ``<p_u, q_i> = 1`` per event; lists rank ``|1 - <p_u, q_i>|``.
* :class:`RiverBiasedMF`: River's ``reco.BiasedMF`` on implicit positives (target 1) and
  uniformly sampled unseen items (target 0), ranking a candidate set given by a callable.

Every list leaves out the items the user interacted with. A ``forget_user`` event drops the
user's own state (seen items, history, factors); aggregate item statistics stay. Item state
lives in numpy rows indexed by an :class:`ItemIndex`, so scoring the catalog is vectorised.

>>> from operators.events import Event
>>> model = Covisitation(normalisation="raw")
>>> for user, item, ts in [("ann", "tea", 1), ("ann", "jam", 2), ("bob", "tea", 3),
...                        ("cat", "pot", 4), ("cat", "cup", 5), ("dan", "cup", 6)]:
...     model.learn(Event(user, item, ts, "purchase"))
>>> model.recommend("bob", 2)
['jam', 'cup']
>>> grid = covisitation_grid(histories=(10,), half_lives=(None,), content_weights=(0.0,))
>>> [variant.name for variant in grid]
['covisitation_w10_raw', 'covisitation_w10_conditional', 'covisitation_w10_cosine']
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import Any, Literal

import numpy as np
from river import optim, reco

from operators.events import Event

Normalisation = Literal["raw", "conditional", "cosine"]
NORMALISATIONS: tuple[Normalisation, ...] = ("raw", "conditional", "cosine")

_DAY_MS = 86_400_000

#: Defaults chosen on Online Retail and a synthetic stream together (the same for every stream).
WINDOW_DAYS = 3.0
FILL_WEIGHT = 0.3
RECENCY_HALF_LIFE = 1.0
#: Weight of the content term of the co-visitation variants that have one (not tuned: the
#: co-visitation term's best is 1 too).
CONTENT_WEIGHT = 1.0


def top_k(scores: np.ndarray, k: int, exclude: Collection[int] = ()) -> np.ndarray:
    """Positions of the ``k`` highest ``scores``, best first, leaving out ``exclude``.

    Ties are broken arbitrarily (but deterministically).

    >>> top_k(np.array([0.1, 0.9, 0.5, 0.7]), 2, exclude={1}).tolist()
    [3, 2]
    """
    if exclude:
        scores = scores.copy()
        scores[np.fromiter(exclude, dtype=np.intp, count=len(exclude))] = -np.inf
    k = min(k, len(scores) - len(exclude))
    if k <= 0:
        return np.empty(0, dtype=np.intp)
    best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    return best[np.argsort(-scores[best], kind="stable")]


def grown(array: np.ndarray, size: int, axes: tuple[int, ...] = (0,)) -> np.ndarray:
    """``array`` if its ``axes`` hold ``size`` rows, else a copy at least twice as large."""
    if all(array.shape[axis] >= size for axis in axes):
        return array
    shape = list(array.shape)
    for axis in axes:
        shape[axis] = max(size, 2 * shape[axis])
    bigger = np.zeros(shape, dtype=array.dtype)
    bigger[tuple(slice(0, length) for length in array.shape)] = array
    return bigger


class ItemIndex:
    """Dense row numbers for item ids, in order of first appearance."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self._rows: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, item_id: str) -> int:
        """The item's row, adding it at the end if it is new."""
        row = self._rows.get(item_id)
        if row is None:
            row = self._rows[item_id] = len(self.ids)
            self.ids.append(item_id)
        return row

    def get(self, item_id: str) -> int | None:
        return self._rows.get(item_id)


class _Shared:
    """State that several models read, updated once per event by whichever learns it first.

    The evaluator hands every model the same ``Event`` object, so identity tells a repeat.
    """

    def __init__(self) -> None:
        self._last: Event | None = None

    def learn(self, event: Event) -> None:
        if event is not self._last:
            self._last = event
            self._update(event)

    def _update(self, event: Event) -> None:
        raise NotImplementedError


class Interactions(_Shared):
    """The item index, each user's seen rows and each item's distinct users (all-time).

    After an item event, ``row`` is its item's row and ``first`` whether it was the user's first
    interaction with that item.
    """

    def __init__(self) -> None:
        super().__init__()
        self.items = ItemIndex()
        self.seen: dict[str, set[int]] = {}
        self._users = np.zeros(64)
        self.row = -1
        self.first = False

    @property
    def users(self) -> np.ndarray:
        """How many users came to each item (a forgotten user who comes back counts again)."""
        return self._users[: len(self.items)]

    def _update(self, event: Event) -> None:
        if event.is_forget:
            self.seen.pop(event.user_id, None)
            return
        if event.item_id is None:
            raise ValueError(f"a {event.type} event needs an item_id (user {event.user_id})")
        self.row = self.items.row(event.item_id)
        seen = self.seen.setdefault(event.user_id, set())
        self.first = self.row not in seen
        if self.first:
            seen.add(self.row)
            self._users = grown(self._users, self.row + 1)
            self._users[self.row] += 1.0


class _Baseline:
    """Shared bookkeeping: interactions (possibly shared with other models), forgetting, lists.

    A subclass updates its state in ``_learn`` and scores the whole catalog in ``_scores``.
    """

    name: str

    def __init__(self, interactions: Interactions | None = None) -> None:
        self.interactions = interactions or Interactions()

    @property
    def items(self) -> ItemIndex:
        return self.interactions.items

    @property
    def seen(self) -> dict[str, set[int]]:
        return self.interactions.seen

    def learn(self, event: Event) -> None:
        self.interactions.learn(event)
        if event.is_forget:
            self._forget(event)
        else:
            self._learn(event, self.interactions.row)

    def recommend(self, user_id: str, k: int) -> list[str]:
        scores = self._scores(user_id)
        if scores is None:
            return []
        ids = self.items.ids
        return [ids[row] for row in top_k(scores, k, self.seen.get(user_id, ()))]

    def _learn(self, event: Event, row: int) -> None:
        raise NotImplementedError

    def _forget(self, event: Event) -> None:
        """Drop the event's user's own state beyond the seen set (nothing by default)."""

    def _scores(self, user_id: str) -> np.ndarray | None:
        raise NotImplementedError


class _Counts:
    """A growable vector of event counts per item row, optionally decayed by event count.

    Decay multiplies the increment by ``2 ** (1 / half_life)`` per event instead of shrinking
    every count; the vector is rescaled before the increment overflows.
    """

    _RESCALE_ABOVE = 1e150

    def __init__(self, half_life_events: float | None) -> None:
        self._growth = 1.0 if half_life_events is None else 2.0 ** (1.0 / half_life_events)
        self._increment = 1.0
        self._values = np.zeros(64)
        self._size = 0

    @property
    def values(self) -> np.ndarray:
        return self._values[: self._size]

    def add(self, row: int) -> None:
        self._size = max(self._size, row + 1)
        self._values = grown(self._values, self._size)
        self._values[row] += self._increment
        self._increment *= self._growth
        if self._increment > self._RESCALE_ABOVE:
            self._values /= self._increment
            self._increment = 1.0


class Popularity(_Baseline):
    """The most frequent items, all-time or with a half-life counted in events.

    >>> from operators.events import Event
    >>> model = Popularity(half_life_events=1)
    >>> for user, item in [("ann", "tea"), ("bob", "tea"), ("cat", "jam")]:
    ...     model.learn(Event(user, item, 1, "purchase"))
    >>> model.recommend("dan", 2)
    ['jam', 'tea']
    """

    def __init__(self, half_life_events: float | None = None, name: str | None = None) -> None:
        super().__init__()
        self.name = name or ("popularity" if half_life_events is None else "decayed_popularity")
        self.counts = _Counts(half_life_events)

    def _learn(self, event: Event, row: int) -> None:
        self.counts.add(row)

    def _scores(self, user_id: str) -> np.ndarray:
        return self.counts.values


class WindowCounts(_Shared):
    """Distinct users per item over the last ``days`` of event time (events come in time order).

    A user adds 1 to an item at the first interaction with it; the 1 leaves the count once
    that interaction is ``days`` old. Learned after the ``interactions`` it reads.
    """

    def __init__(self, interactions: Interactions, days: float) -> None:
        super().__init__()
        self.interactions = interactions
        self.span_ms = days * _DAY_MS
        self._values = np.zeros(64)
        self._firsts: deque[tuple[int, int]] = deque()

    @property
    def values(self) -> np.ndarray:
        return self._values[: len(self.interactions.items)]

    def _update(self, event: Event) -> None:
        if event.is_forget:
            return
        if self.interactions.first:
            row = self.interactions.row
            self._values = grown(self._values, row + 1)
            self._values[row] += 1.0
            self._firsts.append((event.ts, row))
        firsts = self._firsts
        while firsts and firsts[0][0] <= event.ts - self.span_ms:
            self._values[firsts.popleft()[1]] -= 1.0


class WindowPopularity(_Baseline):
    """The items most users came to in the last ``days`` of event time.

    >>> from operators.events import Event
    >>> model = WindowPopularity(days=1)
    >>> for user, item, day in [("ann", "old", 0), ("bob", "old", 0), ("ann", "old", 1),
    ...                         ("cat", "new", 1)]:
    ...     model.learn(Event(user, item, 1 + day * 86_400_000, "purchase"))
    >>> model.recommend("dan", 2)
    ['new', 'old']
    """

    def __init__(self, days: float = WINDOW_DAYS) -> None:
        super().__init__()
        self.name = "window_popularity"
        self.counts = WindowCounts(self.interactions, days)

    def _learn(self, event: Event, row: int) -> None:
        self.counts.learn(event)

    def _scores(self, user_id: str) -> np.ndarray:
        return self.counts.values


class ItemCategories(_Shared):
    """Each item's category, the latest one its events named, as a code per item row (0: none).
    Learned after the ``interactions`` it reads."""

    def __init__(self, interactions: Interactions) -> None:
        super().__init__()
        self.interactions = interactions
        self._codes: dict[str, int] = {}
        self._rows = np.zeros(64, np.intp)

    def __len__(self) -> int:
        return len(self._codes)

    @property
    def codes(self) -> np.ndarray:
        return self._rows[: len(self.interactions.items)]

    def _update(self, event: Event) -> None:
        if event.is_forget or event.category is None:
            return
        row = self.interactions.row
        self._rows = grown(self._rows, row + 1)
        self._rows[row] = self._codes.setdefault(event.category, len(self._codes) + 1)

    def taste(self, rows: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Per item: the ``weights``-weighted share of ``rows`` (a user's items) in its category."""
        codes = self.codes
        shares = np.bincount(codes[rows], weights=weights, minlength=len(self) + 1)
        shares[0] = 0.0
        return shares[codes] / weights.sum()


class CoVisits(_Shared):
    """Symmetric co-occurrence counts of each event's item with its user's last ``history``
    distinct items, in a dense items x items float32 matrix (64 MB at 4,000 items, which is why
    the catalog is capped at ``max_items``). Learned after the ``interactions`` it reads.
    """

    def __init__(self, interactions: Interactions, history: int, max_items: int) -> None:
        super().__init__()
        self.interactions = interactions
        self.history = history
        self.max_items = max_items
        self.matrix = np.zeros((64, 64), dtype=np.float32)
        self.recent: dict[str, list[int]] = {}
        self.stamps: dict[str, list[int]] = {}
        self._block: tuple[str, Event | None, np.ndarray] | None = None

    def _update(self, event: Event) -> None:
        if event.is_forget:
            self.recent.pop(event.user_id, None)
            self.stamps.pop(event.user_id, None)
            return
        row = self.interactions.row
        if row >= self.max_items:
            raise ValueError(
                f"the covisitation baseline holds a dense matrix of at most {self.max_items} "
                "items; this stream has more (raise max_items if memory allows)"
            )
        self.matrix = grown(self.matrix, row + 1, axes=(0, 1))
        recent = self.recent.setdefault(event.user_id, [])
        stamps = self.stamps.setdefault(event.user_id, [])
        if row in recent:
            del stamps[recent.index(row)]
            recent.remove(row)
        if recent:
            self.matrix[row, recent] += 1.0
            self.matrix[recent, row] += 1.0
        recent.append(row)
        stamps.append(event.ts)
        if len(recent) > self.history:
            del recent[0], stamps[0]

    def visits_ago(self, user_id: str) -> np.ndarray:
        """For each of the user's last items (oldest first), how many of the user's visits
        (distinct timestamps) came after its latest one: 0 for the newest basket."""
        stamps = self.stamps.get(user_id, [])
        distinct, visit = np.unique(stamps, return_inverse=True)
        return len(distinct) - 1 - visit

    def rows_of(self, user_id: str) -> np.ndarray:
        """The counts of the user's last items (oldest first) with every item, one row each.

        Kept until the next event, so the variants that share these counts gather them once.
        """
        if self._block is None or self._block[:2] != (user_id, self._last):
            size = len(self.interactions.items)
            block = self.matrix[self.recent.get(user_id, []), :size]
            self._block = (user_id, self._last, block)
        return self._block[2]


class Covisitation(_Baseline):
    """Items co-visited with the user's last ``history`` distinct items, filled by popularity.

    A candidate ``c`` scores ``sum(w_j * n(j, c))`` over the user's last items ``j``, where
    ``n`` is the co-occurrence count (``raw``), the count divided by ``j``'s distinct users
    (``conditional``: how often ``c`` follows from ``j``) or by the geometric mean of both items'
    distinct users (``cosine``). ``w_j`` is 1, or with ``recency_half_life`` ``0.5 ** (v / h)``
    for an item last met ``v`` visits ago (a visit: one timestamp, so a basket's items weigh
    the same). The sums, scaled to a best of 1, get ``fill_weight`` times the
    :class:`WindowPopularity` share of ``fill_days``, which ranks what co-occurs with nothing,
    and ``content_weight`` times that share times the ``w_j``-weighted share of the user's last
    items in the candidate's category (0 without categories).

    ``counts``, ``fill`` and ``categories`` may be shared with other variants (see
    :func:`covisitation_grid`); ``history``, ``max_items`` and ``fill_days`` only size the ones
    made when they are not given.
    """

    def __init__(
        self,
        history: int = 30,
        normalisation: Normalisation = "cosine",
        recency_half_life: float | None = RECENCY_HALF_LIFE,
        fill_days: float = WINDOW_DAYS,
        fill_weight: float = FILL_WEIGHT,
        max_items: int = 20_000,
        content_weight: float = 0.0,
        *,
        counts: CoVisits | None = None,
        fill: WindowCounts | None = None,
        categories: ItemCategories | None = None,
    ) -> None:
        shared = counts or fill or categories
        super().__init__(None if shared is None else shared.interactions)
        self.counts = counts or CoVisits(self.interactions, history, max_items)
        self.fill = fill or WindowCounts(self.interactions, fill_days)
        self.categories = categories or ItemCategories(self.interactions)
        readers = (self.counts, self.fill, self.categories)
        if any(reader.interactions is not self.interactions for reader in readers):
            raise ValueError("counts, fill and categories must read the same interactions")
        self.normalisation = normalisation
        self.recency_half_life = recency_half_life
        self.fill_weight = fill_weight
        self.content_weight = content_weight
        recency = "" if recency_half_life is None else f"_recency{recency_half_life:g}"
        content = f"_content{content_weight:g}" if content_weight else ""
        self.name = f"covisitation_w{self.counts.history}_{normalisation}{recency}{content}"

    @property
    def recent(self) -> dict[str, list[int]]:
        return self.counts.recent

    def _learn(self, event: Event, row: int) -> None:
        self.counts.learn(event)
        self.fill.learn(event)
        self.categories.learn(event)

    def _forget(self, event: Event) -> None:
        self.counts.learn(event)

    def _scores(self, user_id: str) -> np.ndarray:
        fill = self.fill.values
        top = fill.max(initial=0.0)
        scores = fill * (self.fill_weight / top) if top > 0 else fill.copy()
        recent = self.recent.get(user_id)
        if not recent:
            return scores
        weights = np.ones(len(recent))
        if self.recency_half_life is not None:
            weights = 0.5 ** (self.counts.visits_ago(user_id) / self.recency_half_life)
        if self.content_weight and len(self.categories):
            taste = self.categories.taste(np.array(recent), weights)
            scores += self.content_weight * taste * (fill / top if top > 0 else fill)
        users = self.interactions.users
        if self.normalisation == "conditional":
            weights /= users[recent]
        elif self.normalisation == "cosine":
            weights /= np.sqrt(users[recent])
        covisits = weights @ self.counts.rows_of(user_id)
        if self.normalisation == "cosine":
            covisits /= np.sqrt(users)
        best = covisits.max()
        if best > 0:
            scores += covisits / best
        return scores


def covisitation_grid(
    histories: Sequence[int] = (10, 30),
    normalisations: Sequence[Normalisation] = NORMALISATIONS,
    half_lives: Sequence[float | None] = (None, RECENCY_HALF_LIFE),
    fill_days: float = WINDOW_DAYS,
    fill_weight: float = FILL_WEIGHT,
    max_items: int = 20_000,
    content_weights: Sequence[float] = (0.0, CONTENT_WEIGHT),
) -> list[Covisitation]:
    """One :class:`Covisitation` per combination of the parameters. All variants share one set
    of interactions, popularity fill and categories, and those of one history length their
    counts, so an event is counted once per history length however many variants read it.
    """
    interactions = Interactions()
    fill = WindowCounts(interactions, fill_days)
    categories = ItemCategories(interactions)
    counts_of = {history: CoVisits(interactions, history, max_items) for history in histories}
    return [
        Covisitation(
            normalisation=normalisation,
            recency_half_life=half_life,
            fill_weight=fill_weight,
            content_weight=content_weight,
            counts=counts_of[history],
            fill=fill,
            categories=categories,
        )
        for history in histories
        for normalisation in normalisations
        for half_life in half_lives
        for content_weight in content_weights
    ]


class _Factors:
    """Growable latent vectors: one row per item, one vector per user, drawn from N(0, 0.1)."""

    def __init__(self, factors: int, seed: int) -> None:
        self.factors = factors
        self.rng = np.random.default_rng(seed)
        self.users: dict[str, np.ndarray] = {}
        self.items = np.zeros((64, factors))
        self.size = 0

    def item(self, row: int) -> np.ndarray:
        """The item's vector, drawn when ``row`` is a new row."""
        if row == self.size:
            self.items = grown(self.items, row + 1)
            self.items[row] = self.rng.normal(0.0, 0.1, size=self.factors)
            self.size += 1
        return self.items[row]

    def user(self, user_id: str) -> np.ndarray:
        vector = self.users.get(user_id)
        if vector is None:
            vector = self.users[user_id] = self.rng.normal(0.0, 0.1, size=self.factors)
        return vector


class BPR(_Baseline):
    """Online BPR-MF: for each event ``(u, i)`` and a few distinct items ``j`` drawn uniformly
    from the catalog (a draw ``u`` has seen is dropped), one SGD step up
    ``log sigmoid(x_ui - x_uj)`` with ``x_ui = <p_u, q_i> + b_i``, all negatives of an event in
    one vectorised step. Lists rank ``x_ui`` over the catalog; a stranger gets the item biases.
    """

    name = "bpr"

    def __init__(
        self,
        factors: int = 32,
        negatives: int = 16,
        learning_rate: float = 0.03,
        l2: float = 0.01,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.negatives = negatives
        self.learning_rate = learning_rate
        self.l2 = l2
        self.factors = _Factors(factors, seed)
        self.biases = np.zeros(64)

    def _learn(self, event: Event, row: int) -> None:
        factors = self.factors
        q_i = factors.item(row)
        self.biases = grown(self.biases, factors.size)
        p = factors.user(event.user_id)
        seen = self.seen[event.user_id]
        draws = set(factors.rng.integers(factors.size, size=self.negatives).tolist())
        negatives = np.array(sorted(draws - seen), dtype=np.intp)
        if not len(negatives):
            return
        q_j = factors.items[negatives]
        difference = q_i - q_j
        margin = difference @ p + self.biases[row] - self.biases[negatives]
        gain = 0.5 * (1.0 - np.tanh(margin / 2.0))  # sigmoid(-margin), without overflow
        total = gain.sum()
        rate, l2 = self.learning_rate, self.l2
        p_step = rate * (gain @ difference - l2 * p)
        q_i += rate * (total * p - l2 * q_i)
        factors.items[negatives] -= rate * (gain[:, None] * p + l2 * q_j)
        self.biases[row] += rate * (total - l2 * self.biases[row])
        self.biases[negatives] -= rate * (gain + l2 * self.biases[negatives])
        p += p_step

    def _forget(self, event: Event) -> None:
        self.factors.users.pop(event.user_id, None)

    def _scores(self, user_id: str) -> np.ndarray:
        factors = self.factors
        biases = self.biases[: factors.size]
        p = factors.users.get(user_id)
        return biases.copy() if p is None else factors.items[: factors.size] @ p + biases


class ISGD(_Baseline):
    """Incremental SGD matrix factorisation for positive-only feedback (Vinagre et al. 2014).

    For each event ``(u, i)``: ``err = 1 - <p_u, q_i>``, ``p_u += lr * (err * q_i - l2 * p_u)``,
    then ``q_i += lr * (err * p_u - l2 * q_i)`` with the updated ``p_u``, as in the paper's
    algorithm. New factors are drawn from N(0, 0.1). A user's list holds the unseen items whose
    ``<p_u, q_i>`` is closest to 1.
    """

    name = "isgd"

    def __init__(
        self,
        factors: int = 10,
        learning_rate: float = 0.05,
        l2: float = 0.01,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.learning_rate = learning_rate
        self.l2 = l2
        self.factors = _Factors(factors, seed)

    def _learn(self, event: Event, row: int) -> None:
        q = self.factors.item(row)
        p = self.factors.user(event.user_id)
        error = 1.0 - p @ q
        p += self.learning_rate * (error * q - self.l2 * p)
        q += self.learning_rate * (error * p - self.l2 * q)

    def _forget(self, event: Event) -> None:
        self.factors.users.pop(event.user_id, None)

    def _scores(self, user_id: str) -> np.ndarray | None:
        p = self.factors.users.get(user_id)
        if p is None:
            return None
        return -np.abs(1.0 - self.factors.items[: self.factors.size] @ p)


class RiverBiasedMF(_Baseline):
    """River's ``reco.BiasedMF`` learned on implicit feedback, ranking a given candidate set.

    Each event is a positive (target 1) followed by ``negatives`` items drawn uniformly from the
    items seen so far that the user has not interacted with (target 0), so the squared loss does
    not collapse to "everything is 1". ``candidates(user_id)`` supplies the items to rank (e.g.
    co-visitation and popularity candidates, or the engine's own candidate set); they are scored
    in one vectorised pass from the model's biases and latent vectors.
    """

    name = "river_biasedmf"

    def __init__(
        self,
        candidates: Callable[[str], list[str]],
        factors: int = 10,
        negatives: int = 1,
        learning_rate: float = 0.05,
        l2: float = 0.01,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.candidates = candidates
        self.negatives = negatives
        self._rng = random.Random(seed)
        self.model = reco.BiasedMF(
            n_factors=factors,
            bias_optimizer=optim.SGD(learning_rate),
            latent_optimizer=optim.SGD(learning_rate),
            l2_bias=l2,
            l2_latent=l2,
            latent_initializer=optim.initializers.Normal(mu=0.0, sigma=0.1, seed=seed),
            seed=seed,
        )

    def _learn(self, event: Event, row: int) -> None:
        ids = self.items.ids
        self.model.learn_one(event.user_id, ids[row], 1.0)
        seen = self.seen[event.user_id]
        if len(ids) == len(seen):
            return
        for _ in range(self.negatives):
            negative = self._rng.randrange(len(ids))
            while negative in seen:
                negative = self._rng.randrange(len(ids))
            self.model.learn_one(event.user_id, ids[negative], 0.0)

    def _forget(self, event: Event) -> None:
        self.model.u_biases.pop(event.user_id, None)
        self.model.u_latents.pop(event.user_id, None)

    def recommend(self, user_id: str, k: int) -> list[str]:
        seen = self.seen.get(user_id, set())
        rows = [self.items.get(item) for item in self.candidates(user_id)]
        known = [row for row in rows if row is not None and row not in seen]
        if not known:
            return []
        ids = self.items.ids
        names = [ids[row] for row in known]
        model: Any = self.model
        zeros = np.zeros(model.n_factors)
        latents = np.array([model.i_latents.get(name, zeros) for name in names])
        biases = np.array([model.i_biases.get(name, 0.0) for name in names])
        user_vector = model.u_latents.get(user_id, zeros)
        scores = model.global_mean.get() + model.u_biases.get(user_id, 0.0) + biases
        scores += latents @ user_vector
        return [names[position] for position in top_k(scores, k)]
