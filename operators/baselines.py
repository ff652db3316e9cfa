"""Honest baselines for the prequential evaluation, each an ``OnlineRecommender``.

* :class:`Popularity`: all-time event counts, or with ``half_life_events`` exponentially decayed
  counts (an event ``h`` events ago weighs half as much as the newest one).
* :class:`Covisitation`: item co-visitation counts within users' last ``history`` distinct items;
  a user's candidates score the summed co-visitation with the user's own last items, ties and
  the rest of the list filled by popularity.
* :class:`ISGD`: incremental matrix factorisation for positive-only feedback (Vinagre, Jorge &
  Gama 2014, "Fast incremental matrix factorization for recommendation with positive-only
  feedback"): one SGD step towards ``<p_u, q_i> = 1`` per event; lists rank ``|1 - <p_u, q_i>|``.
* :class:`RiverBiasedMF`: River's ``reco.BiasedMF`` on implicit positives (target 1) and
  uniformly sampled unseen items (target 0), ranking a candidate set given by a callable.

Every list leaves out the items the user interacted with. A ``forget_user`` event drops the
user's own state (seen items, history, factors); aggregate item statistics stay. Item state
lives in numpy rows indexed by an :class:`ItemIndex`, so scoring the catalog is vectorised.

>>> from operators.events import Event
>>> model = Covisitation()
>>> for user, item, ts in [("ann", "tea", 1), ("ann", "jam", 2), ("bob", "tea", 3),
...                        ("cat", "pot", 4), ("cat", "cup", 5), ("dan", "cup", 6)]:
...     model.learn(Event(user, item, ts, "purchase"))
>>> model.recommend("bob", 2)
['jam', 'cup']
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from typing import Any

import numpy as np
from river import optim, reco

from operators.events import Event


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


class _Baseline:
    """Shared bookkeeping: the item index, each user's seen rows, forgetting and top-k lists.

    A subclass updates its state in ``_learn`` and scores the whole catalog in ``_scores``.
    """

    name: str

    def __init__(self) -> None:
        self.items = ItemIndex()
        self.seen: dict[str, set[int]] = {}

    def learn(self, event: Event) -> None:
        if event.is_forget:
            self.seen.pop(event.user_id, None)
            self._forget(event.user_id)
            return
        assert event.item_id is not None
        row = self.items.row(event.item_id)
        self._learn(event.user_id, row)
        self.seen.setdefault(event.user_id, set()).add(row)

    def recommend(self, user_id: str, k: int) -> list[str]:
        scores = self._scores(user_id)
        if scores is None:
            return []
        ids = self.items.ids
        return [ids[row] for row in top_k(scores, k, self.seen.get(user_id, ()))]

    def _learn(self, user_id: str, row: int) -> None:
        raise NotImplementedError

    def _forget(self, user_id: str) -> None:
        """Drop the user's own state beyond the seen set (nothing by default)."""

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

    def _learn(self, user_id: str, row: int) -> None:
        self.counts.add(row)

    def _scores(self, user_id: str) -> np.ndarray:
        return self.counts.values


class Covisitation(_Baseline):
    """Items co-visited with the user's last ``history`` distinct items, filled by popularity.

    Each event of item ``i`` adds 1 to the (symmetric) count of ``i`` with every other item in
    the user's last ``history`` distinct items, then makes ``i`` the newest of them. Counts are
    kept in a dense items x items float32 matrix (64 MB at 4,000 items), which is why the
    catalog is capped at ``max_items``. The fill uses :class:`Popularity` counts with the same
    ``half_life_events`` (all-time by default); they only break ties between equal sums.
    """

    def __init__(
        self,
        history: int = 30,
        half_life_events: float | None = None,
        max_items: int = 20_000,
        name: str = "covisitation",
    ) -> None:
        super().__init__()
        self.name = name
        self.history = history
        self.max_items = max_items
        self.counts = _Counts(half_life_events)
        self.matrix = np.zeros((64, 64), dtype=np.float32)
        self.recent: dict[str, list[int]] = {}

    def _learn(self, user_id: str, row: int) -> None:
        if row >= self.max_items:
            raise ValueError(
                f"the covisitation baseline holds a dense matrix of at most {self.max_items} "
                "items; this stream has more (raise max_items if memory allows)"
            )
        self.matrix = grown(self.matrix, row + 1, axes=(0, 1))
        self.counts.add(row)
        recent = self.recent.setdefault(user_id, [])
        if row in recent:
            recent.remove(row)
        if recent:
            self.matrix[row, recent] += 1.0
            self.matrix[recent, row] += 1.0
        recent.append(row)
        if len(recent) > self.history:
            del recent[0]

    def _forget(self, user_id: str) -> None:
        self.recent.pop(user_id, None)

    def _scores(self, user_id: str) -> np.ndarray:
        size = len(self.items)
        popularity = self.counts.values
        scores = popularity / (popularity.max() * 2.0) if size else popularity.copy()
        recent = self.recent.get(user_id)
        if recent:
            scores += self.matrix[recent, :size].sum(axis=0, dtype=np.float64)
        return scores


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
        self._rng = np.random.default_rng(seed)
        self._factors = factors
        self.users: dict[str, np.ndarray] = {}
        self.item_factors = np.zeros((64, factors))
        self._item_rows = 0

    def _new_factors(self) -> np.ndarray:
        return self._rng.normal(0.0, 0.1, size=self._factors)

    def _learn(self, user_id: str, row: int) -> None:
        if row == self._item_rows:
            self.item_factors = grown(self.item_factors, row + 1)
            self.item_factors[row] = self._new_factors()
            self._item_rows += 1
        p = self.users.get(user_id)
        if p is None:
            p = self.users[user_id] = self._new_factors()
        q = self.item_factors[row]
        error = 1.0 - p @ q
        p += self.learning_rate * (error * q - self.l2 * p)
        q += self.learning_rate * (error * p - self.l2 * q)

    def _forget(self, user_id: str) -> None:
        self.users.pop(user_id, None)

    def _scores(self, user_id: str) -> np.ndarray | None:
        p = self.users.get(user_id)
        if p is None:
            return None
        return -np.abs(1.0 - self.item_factors[: self._item_rows] @ p)


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

    def _learn(self, user_id: str, row: int) -> None:
        ids = self.items.ids
        self.model.learn_one(user_id, ids[row], 1.0)
        seen = self.seen.get(user_id, set())
        if len(ids) == len(seen) + (row not in seen):
            return
        for _ in range(self.negatives):
            negative = self._rng.randrange(len(ids))
            while negative == row or negative in seen:
                negative = self._rng.randrange(len(ids))
            self.model.learn_one(user_id, ids[negative], 0.0)

    def _forget(self, user_id: str) -> None:
        self.model.u_biases.pop(user_id, None)
        self.model.u_latents.pop(user_id, None)

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
