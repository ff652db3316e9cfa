"""Item knowledge: co-visitation links, popularity and embeddings, learned one event at a time.

One :class:`ItemModel` holds what streamrec knows about items, for every item, in numpy rows:

- **Co-visitation.** Each event links its item both ways to the user's few previous items
  (:attr:`Observation.recent`), weighted by the weaker event and by the time between the two.
  An item keeps at most ``2 * neighbours`` links (pruned to the strongest ``neighbours``) and,
  in three arrays over all rows, its strongest ``reply_neighbours`` ones, re-sorted after
  ``reply_refresh`` updates: what candidate generation's compiled pass reads.
- **Popularity.** Counted once per user and item (an observation's ``first``), at a short and a
  long half-life: a distinct-user count over a sliding event-time window, in effect.
- **Categories.** An item's category (its events' optional ``category``, the latest one
  given) as an index into the categories of the live items, and per category its items by
  short-term popularity (:meth:`ItemModel.category_trending`): content, which places a new item
  among the user's tastes before it has links or is popular.
- **Embeddings.** An input and an output vector per item, trained by SGD on a next-item
  objective with sampled negatives (word2vec's skip-gram with negative sampling, the context
  being the user's previous items). A user's interest is the recency-weighted sum of the input
  vectors of their items (see :mod:`operators.candidates`); its dot product with an item's output
  vector says how well the item follows the user's history, also for items without links.

Every weight decays with event time by *forward decay*: it is stored multiplied by
``2 ** ((ts - ref) / half_life)`` against one reference time ``ref``, so an update is O(1) and a
reader divides by the factor of its own moment. Items with no event for ``item_idle_ms`` are
dropped (swept every ``sweep_every`` observations) and their rows reused, so memory follows the
live catalog.

>>> config = EngineConfig(dimensions=4)
>>> model = ItemModel(config)
>>> day = 86_400_000
>>> model.observe(Observation("tea", 0, 1.0, True, ()))
>>> model.observe(Observation("jam", 60_000, 1.0, True, (("tea", 0, 1.0),)))
>>> model.observe(Observation("jam", day, 1.0, True, ()))
>>> [model.ids[row] for row in model.neighbours(model.rows["tea"])[0]]
['jam']
>>> bool(model.short[model.rows["jam"]] > model.short[model.rows["tea"]])
True
>>> ItemModel.restore(model.snapshot(), config).snapshot()["ids"] == model.snapshot()["ids"]
True
"""

from __future__ import annotations

import heapq
import sys
import zlib
from itertools import chain
from operator import itemgetter
from typing import NamedTuple

import numpy as np
from numba import njit

from operators.engine_config import EngineConfig
from operators.topk import best

# Rescale the stored weights before a forward-decay factor could overflow a float.
_MAX_EXPONENT = 60.0
# Negatives are drawn from the most recent observations: popularity-proportional sampling.
_RECENT_ITEMS = 4096
_INIT_SCALE = 0.1

#: One previous item of the user: (item_id, ts, weight).
Previous = tuple[str, int, float]
ItemModelSnapshot = dict[str, object]


class Observation(NamedTuple):
    """One accepted event as the item model sees it (no user id: it is not needed here).

    A named tuple: every event's observation crosses to every other worker, and a tuple pickles
    and unpickles in about half the time of a frozen dataclass."""

    item_id: str
    ts: int
    #: How much the event says about interest in the item.
    weight: float
    #: The user's first interaction with the item: it counts for popularity.
    first: bool
    #: The user's previous distinct items, oldest first, at most ``config.link_recent``.
    recent: tuple[Previous, ...]
    #: The item's category, if the event names one.
    category: str | None = None


class ItemModel:
    """Co-visitation, distinct-user popularity and item embeddings of every live item."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.rows: dict[str, int] = {}
        self.ids: list[str | None] = []
        self._free: list[int] = []
        capacity = 64
        #: Row -> neighbour row -> stored link weight.
        self.links: list[dict[int, float]] = []
        #: Per row: its strongest ``reply_neighbours`` neighbours (rows, stored link weights,
        #: how many), in arrays a compiled reader takes whole after :meth:`refresh_neighbours`.
        self.top_rows = np.zeros((capacity, config.reply_neighbours), np.int32)
        self.top_weights = np.zeros((capacity, config.reply_neighbours))
        self.top_count = np.zeros(capacity, np.int32)
        self._stale = np.zeros(capacity, np.int32)
        self._scratch = np.zeros(0, np.int64)
        #: Stored link weight leaving each row (its co-visitation "popularity").
        self.mass = np.zeros(capacity)
        self.short = np.zeros(capacity)
        self.long = np.zeros(capacity)
        self.last_ts = np.zeros(capacity, np.int64)
        self.first_ts = np.zeros(capacity, np.int64)
        #: Each row's index into ``category_names``, -1 for none.
        self.category = np.full(capacity, -1, np.int32)
        #: The categories of the live items (pruned by :meth:`_sweep`), and their indexes.
        self.category_names: list[str] = []
        self._category_index: dict[str, int] = {}
        #: Per category index: its most popular rows, best first, and when they were sorted.
        self._category_trending: dict[int, tuple[np.ndarray, int]] = {}
        self.inp = np.zeros((capacity, config.dimensions), np.float32)
        self.out = np.zeros((capacity, config.dimensions), np.float32)
        self.ref = 0
        self.observed = 0
        self._recent = np.zeros(_RECENT_ITEMS, np.intp)
        self._rng = np.random.default_rng(config.seed)
        self._draws = np.zeros(0)
        self._draws_at = 0
        #: Embedding steps not applied yet: (row, context rows); see :meth:`flush`.
        self._pending: list[tuple[int, list[int]]] = []
        self._trending: np.ndarray = np.zeros(0, np.intp)
        #: The rows :meth:`similar` searches: the most popular at the last refresh (see
        #: :meth:`_refresh`) and the rows of the items that arrived since.
        self._pool: np.ndarray = np.zeros(0, np.intp)
        self._arrived: list[int] = []
        self._trending_at = -1

    def __len__(self) -> int:
        return len(self.rows)

    # -- learning ---------------------------------------------------------------------------

    def observe(self, observation: Observation) -> None:
        """Learn one event: links, popularity and one embedding step."""
        config = self.config
        ts = observation.ts
        if not self.rows:
            self.ref = ts
        elif (ts - self.ref) / config.pop_short_half_life_ms > _MAX_EXPONENT:
            self._rebase(ts)
        boost = self.decay(ts, config.link_half_life_ms)
        row = self._row(observation.item_id, ts)
        self.last_ts[row] = max(int(self.last_ts[row]), ts)
        if observation.category is not None:
            self.category[row] = self._category_of(observation.category)
        if observation.first:
            self.short[row] += observation.weight * self.decay(ts, config.pop_short_half_life_ms)
            self.long[row] += observation.weight * self.decay(ts, config.pop_long_half_life_ms)
        previous = [
            (self._row(item, item_ts), item_ts, weight)
            for item, item_ts, weight in observation.recent
        ]
        gap = config.link_gap_half_life_ms
        for other, other_ts, other_weight in previous:
            link = min(observation.weight, other_weight) * 0.5 ** (abs(ts - other_ts) / gap) * boost
            self._link(row, other, link)
            self._link(other, row, link)
        if previous and config.embeddings:
            self._pending.append((row, [other for other, _, _ in previous]))
        self._recent[self.observed % _RECENT_ITEMS] = row
        self.observed += 1
        if self.observed % config.sweep_every == 0:
            self._sweep(ts)
            self._prune_categories()

    def _link(self, source: int, target: int, weight: float) -> None:
        links = self.links[source]
        links[target] = links.get(target, 0.0) + weight
        self.mass[source] += weight
        neighbours = self.config.neighbours
        if len(links) > 2 * neighbours:
            self.links[source] = dict(heapq.nlargest(neighbours, links.items(), key=itemgetter(1)))
        self._stale[source] += 1

    def _category_of(self, name: str) -> int:
        index = self._category_index.get(name)
        if index is None:
            index = self._category_index[name] = len(self.category_names)
            self.category_names.append(sys.intern(name))
        return index

    def _sort(self, row: int) -> None:
        links = self.links[row]
        keep = self.config.reply_neighbours
        others = np.fromiter(links, np.intp, len(links))
        weights = np.fromiter(links.values(), float, len(links))
        if len(links) > keep:
            best = np.argpartition(-weights, keep - 1)[:keep]
            others, weights = others[best], weights[best]
        count = len(others)
        self.top_rows[row, :count] = others
        self.top_weights[row, :count] = weights
        self.top_count[row] = count
        self._stale[row] = 0

    def flush(self) -> None:
        """Apply the embedding steps of the events observed since the last read.

        Steps are batched (one compiled mini-batch, :func:`_sgd_step`) and every reader of
        embeddings calls this first, so a list never misses an event; within a batch the steps
        all start from the vectors before it, which SGD does not mind.
        """
        pending = self._pending
        if not pending:
            return
        config = self.config
        batch = len(pending)
        rows, contexts = zip(*pending, strict=True)
        pending.clear()
        counts = np.fromiter(map(len, contexts), np.int64, batch)
        context = np.fromiter(chain.from_iterable(contexts), np.int64)
        targets = np.empty((batch, config.negatives + 1), np.int64)
        targets[:, 0] = rows
        targets[:, 1:] = self._recent[self._draw(batch, min(self.observed, _RECENT_ITEMS))]
        _sgd_step(self.inp, self.out, context, counts, targets, config.embedding_rate)

    def _draw(self, batch: int, filled: int) -> np.ndarray:
        """``(batch, negatives)`` positions below ``filled``, from a block of uniform draws."""
        count = self.config.negatives * batch
        if self._draws_at + count > len(self._draws):
            self._draws = self._rng.random(max(_RECENT_ITEMS, count))
            self._draws_at = 0
        start = self._draws_at
        self._draws_at += count
        positions = (self._draws[start : start + count] * max(filled, 1)).astype(np.intp)
        return positions.reshape(batch, self.config.negatives)

    # -- rows and memory --------------------------------------------------------------------

    def _row(self, item_id: str, ts: int) -> int:
        """The item's row; a new item's at ``ts``, its first event."""
        row = self.rows.get(item_id)
        if row is not None:
            return row
        # One string per item, shared with the users' histories (which intern theirs too).
        item_id = sys.intern(item_id)
        if self._free:
            row = self._free.pop()
            self.ids[row] = item_id
            self.links[row] = {}
        else:
            row = len(self.ids)
            self.ids.append(item_id)
            self.links.append({})
            if row >= len(self.mass):
                self._grow(2 * len(self.mass))
        self.rows[item_id] = row
        self._arrived.append(row)
        self.top_count[row] = 0
        self._stale[row] = 0
        self.mass[row] = self.short[row] = self.long[row] = 0.0
        self.first_ts[row] = ts
        self.category[row] = -1
        seed = zlib.crc32(item_id.encode()) ^ self.config.seed
        init = np.random.default_rng(seed).normal(0.0, _INIT_SCALE, (2, self.config.dimensions))
        self.inp[row], self.out[row] = init
        return row

    def _grow(self, capacity: int) -> None:
        def grown(array: np.ndarray) -> np.ndarray:
            bigger = np.zeros((capacity, *array.shape[1:]), array.dtype)
            bigger[: len(array)] = array
            return bigger

        self.top_rows, self.top_weights = grown(self.top_rows), grown(self.top_weights)
        self.top_count, self._stale = grown(self.top_count), grown(self._stale)
        self.mass, self.short, self.long = grown(self.mass), grown(self.short), grown(self.long)
        self.last_ts, self.first_ts = grown(self.last_ts), grown(self.first_ts)
        self.category = grown(self.category)
        self.inp, self.out = grown(self.inp), grown(self.out)

    def _sweep(self, now: int) -> None:
        """Drop the items idle for ``item_idle_ms`` and every link to them."""
        self.flush()
        live = len(self.ids)
        idle = np.flatnonzero(self.last_ts[:live] < now - self.config.item_idle_ms)
        gone = {int(row) for row in idle if self.ids[row] is not None}
        if not gone:
            return
        for row in gone:
            del self.rows[self.ids[row]]  # type: ignore[arg-type]
            self.ids[row] = None
            self.links[row] = {}
            self.top_count[row] = 0
            self.mass[row] = self.short[row] = self.long[row] = 0.0
            self.category[row] = -1
        for row, links in enumerate(self.links):
            if links and not gone.isdisjoint(links):
                for other in gone.intersection(links):
                    del links[other]
                self._sort(row)

        self._recent[np.isin(self._recent, list(gone))] = 0
        self._free.extend(sorted(gone, reverse=True))
        self._trending_at = -1

    def _prune_categories(self) -> None:
        """Forget the categories no live item has any more (renumbering the others), also when
        items change category; and the popular items of each, whose rows may have been
        reused."""
        live = self.category[: len(self.ids)]
        used = np.unique(live[live >= 0])
        self._category_trending.clear()
        if len(used) == len(self.category_names):
            return
        renumber = np.full(len(self.category_names) + 1, -1, np.int32)
        renumber[used] = np.arange(len(used), dtype=np.int32)
        self.category[: len(self.ids)] = renumber[live]
        self.category_names = [self.category_names[index] for index in used.tolist()]
        self._category_index = {name: index for index, name in enumerate(self.category_names)}

    def _rebase(self, ts: int) -> None:
        config = self.config
        age = ts - self.ref
        link_factor = 0.5 ** (age / config.link_half_life_ms)
        for links in self.links:
            for other in links:
                links[other] *= link_factor
        self.top_weights *= link_factor
        self.mass *= link_factor
        self.short *= 0.5 ** (age / config.pop_short_half_life_ms)
        self.long *= 0.5 ** (age / config.pop_long_half_life_ms)
        self.ref = ts

    # -- reading ----------------------------------------------------------------------------

    def neighbours(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """The item's strongest neighbours (rows) and their stored link weights."""
        self.refresh_neighbours(np.array([row]))
        count = self.top_count[row]
        return self.top_rows[row, :count], self.top_weights[row, :count]

    def refresh_neighbours(self, rows: np.ndarray) -> None:
        """Re-sort the neighbours of those of ``rows`` that changed since their last sort, when
        read while they have few links, else after ``reply_refresh`` changes."""
        stale = self._stale[rows]
        changed = stale > 0
        refresh, few = self.config.reply_refresh, self.config.reply_neighbours
        for row, changes in zip(rows[changed].tolist(), stale[changed].tolist(), strict=True):
            if changes >= refresh or len(self.links[row]) <= few:
                self._sort(row)

    def scratch(self) -> np.ndarray:
        """An array of -1 per row, for a compiled reader to mark rows in and leave as it was."""
        if len(self._scratch) < len(self.mass):
            self._scratch = np.full(len(self.mass), -1, np.int64)
        return self._scratch

    def decay(self, ts: int, half_life: int) -> float:
        """What divides a weight stored against ``ref`` to give its value at ``ts``."""
        return 2.0 ** ((ts - self.ref) / half_life)

    def trending(self) -> np.ndarray:
        """Rows of the ``trending`` most popular items (short half-life), best first."""
        self._refresh()
        return self._trending

    def _refresh(self) -> None:
        """Re-rank the trending items and the similarity pool every ``trend_refresh`` events."""
        if self._trending_at >= 0 and self.observed - self._trending_at < self.config.trend_refresh:
            return
        live = len(self.ids)
        best = self._most_popular(np.arange(live), self.config.trending)
        self._trending = best[self.ids_known(best)]
        rows = np.delete(np.arange(live), self._free) if self._free else np.arange(live)
        size = self.config.similar_pool
        if len(rows) > size:
            rows = np.sort(rows[np.argpartition(-self.long[rows], size - 1)[:size]])
        self._pool = rows
        self._arrived.clear()
        self._trending_at = self.observed

    def category_trending(self, category: int) -> np.ndarray:
        """Rows of the ``category_top`` most popular items (short half-life) of one category
        index, best first; re-sorted as often as :meth:`trending`."""
        cached = self._category_trending.get(category)
        if cached is None or self.observed - cached[1] >= self.config.trend_refresh:
            members = np.flatnonzero(self.category[: len(self.ids)] == category)
            cached = (self._most_popular(members, self.config.category_top), self.observed)
            self._category_trending[category] = cached
        return cached[0]

    def _most_popular(self, rows: np.ndarray, count: int) -> np.ndarray:
        """The ``count`` of ``rows`` with the highest short-term popularity, best first."""
        short = self.short[rows]
        if count < len(rows):
            best = np.argpartition(-short, count - 1)[:count]
            rows, short = rows[best], short[best]
        return rows[np.argsort(-short, kind="stable")]

    def ids_known(self, rows: np.ndarray) -> np.ndarray:
        """A mask of the rows that hold a live item."""
        ids = self.ids
        return np.fromiter((ids[row] is not None for row in rows.tolist()), bool, len(rows))

    def similar(self, interest: np.ndarray, count: int) -> np.ndarray:
        """The ``count`` rows whose output vectors score highest against ``interest``, best
        first, among the ``similar_pool`` items with the most distinct users at the last
        :meth:`_refresh` and the items that arrived since (all live items in a smaller
        catalog): the cost of a list does not grow with the catalog."""
        pool = self._similar_pool()
        count = min(count, len(pool))
        if count <= 0:
            return np.zeros(0, np.intp)
        self.flush()
        scores = _similarities(self.out, pool, np.ascontiguousarray(interest, np.float32))
        return pool[best(scores, pool, count)]

    def _similar_pool(self) -> np.ndarray:
        self._refresh()
        if self._arrived:
            self._pool = np.concatenate((self._pool, self._arrived))
            self._arrived.clear()
        return self._pool

    # -- snapshots --------------------------------------------------------------------------

    def snapshot(self) -> ItemModelSnapshot:
        """Compact: arrays as bytes, links as three flat arrays. The embedding steps not applied
        yet are saved as they are: flushing here would make the model depend on when the
        runtime snapshots."""
        live = len(self.ids)
        sources, targets, weights = [], [], []
        for row, links in enumerate(self.links):
            if links:
                sources.append(np.full(len(links), row, np.int32))
                targets.append(np.fromiter(links, np.int32, len(links)))
                weights.append(np.fromiter(links.values(), float, len(links)))

        filled = np.arange(self.config.reply_neighbours) < self.top_count[:live, None]

        def joined(parts: list[np.ndarray], dtype: type) -> bytes:
            return (np.concatenate(parts) if parts else np.zeros(0, dtype)).tobytes()

        return {
            "ids": list(self.ids),
            "ref": self.ref,
            "observed": self.observed,
            "mass": self.mass[:live].tobytes(),
            "short": self.short[:live].tobytes(),
            "long": self.long[:live].tobytes(),
            "last_ts": self.last_ts[:live].tobytes(),
            "first_ts": self.first_ts[:live].tobytes(),
            "category": self.category[:live].tobytes(),
            "category_names": list(self.category_names),
            "category_trending": {
                category: (rows.astype(np.int32).tobytes(), at)
                for category, (rows, at) in self._category_trending.items()
            },
            "inp": self.inp[:live].tobytes(),
            "out": self.out[:live].tobytes(),
            "links": (joined(sources, np.int32), joined(targets, np.int32), joined(weights, float)),
            "recent": self._recent.tobytes(),
            "rng": self._rng.bit_generator.state,
            "draws": (self._draws.tobytes(), self._draws_at),
            "pending": [(row, list(context)) for row, context in self._pending],
            # The caches as they are, so a restored model reads exactly what this one would.
            "stale": self._stale[:live].tobytes(),
            "top": (
                self.top_count[:live].tobytes(),
                self.top_rows[:live][filled].tobytes(),
                self.top_weights[:live][filled].tobytes(),
            ),
            "trending": (
                self._trending.astype(np.int32).tobytes(),
                np.concatenate((self._pool, self._arrived)).astype(np.int32).tobytes(),
                self._trending_at,
            ),
        }

    @classmethod
    def restore(cls, snapshot: ItemModelSnapshot, config: EngineConfig) -> ItemModel:
        model = cls(config)
        ids: list[str | None] = [
            None if item is None else sys.intern(item)
            for item in snapshot["ids"]  # type: ignore[union-attr]
        ]
        live = len(ids)
        model._grow(max(64, live))
        model.ids = ids
        model.rows = {item: row for row, item in enumerate(ids) if item is not None}
        model._free = [row for row, item in enumerate(ids) if item is None][::-1]
        model.ref = int(snapshot["ref"])  # type: ignore[call-overload]
        model.observed = int(snapshot["observed"])  # type: ignore[call-overload]
        for name, dtype in (
            ("mass", float),
            ("short", float),
            ("long", float),
            ("last_ts", np.int64),
            ("first_ts", np.int64),
            ("category", np.int32),
        ):
            getattr(model, name)[:live] = np.frombuffer(snapshot[name], dtype)  # type: ignore[arg-type]
        dims = config.dimensions
        model.inp[:live] = np.frombuffer(snapshot["inp"], np.float32).reshape(live, dims)  # type: ignore[arg-type]
        model.out[:live] = np.frombuffer(snapshot["out"], np.float32).reshape(live, dims)  # type: ignore[arg-type]
        model.links = [{} for _ in range(live)]
        sources, targets, weights = (
            np.frombuffer(raw, dtype)  # type: ignore[arg-type]
            for raw, dtype in zip(snapshot["links"], (np.int32, np.int32, float), strict=True)  # type: ignore[call-overload]
        )
        for source, target, weight in zip(
            sources.tolist(), targets.tolist(), weights.tolist(), strict=True
        ):
            model.links[source][target] = weight
        model._stale[:live] = np.frombuffer(snapshot["stale"], np.int32)  # type: ignore[arg-type]
        lengths, top_rows, top_weights = (
            np.frombuffer(raw, dtype)  # type: ignore[arg-type]
            for raw, dtype in zip(snapshot["top"], (np.int32, np.int32, float), strict=True)  # type: ignore[call-overload]
        )
        filled = np.arange(config.reply_neighbours) < lengths[:, None]
        model.top_count[:live] = lengths
        model.top_rows[:live][filled] = top_rows
        model.top_weights[:live][filled] = top_weights
        trending, pool, model._trending_at = snapshot["trending"]  # type: ignore[misc]
        model._trending = np.frombuffer(trending, np.int32).astype(np.intp)
        model._pool = np.frombuffer(pool, np.int32).astype(np.intp)
        model._recent = np.frombuffer(snapshot["recent"], np.intp).copy()  # type: ignore[arg-type]
        model._rng.bit_generator.state = snapshot["rng"]
        draws, model._draws_at = snapshot["draws"]  # type: ignore[misc]
        model._draws = np.frombuffer(draws, float).copy()
        model.category_names = [sys.intern(name) for name in snapshot["category_names"]]  # type: ignore[attr-defined]
        model._category_index = {name: index for index, name in enumerate(model.category_names)}
        model._category_trending = {
            category: (np.frombuffer(rows, np.int32).astype(np.intp), at)
            for category, (rows, at) in snapshot["category_trending"].items()  # type: ignore[attr-defined]
        }
        model._pending = [(row, list(context)) for row, context in snapshot["pending"]]  # type: ignore[attr-defined]
        return model


@njit("float64[:](float32[:, ::1], int64[:], float32[::1])", cache=True, fastmath=True)
def _similarities(out: np.ndarray, rows: np.ndarray, interest: np.ndarray) -> np.ndarray:
    """Each row's output vector against ``interest``, without copying the rows out first (a
    copy of a 5,000-row pool cost twice the products)."""
    scores = np.empty(len(rows))
    for position in range(len(rows)):
        row = rows[position]
        total = np.float32(0.0)
        for dimension in range(len(interest)):
            total += out[row, dimension] * interest[dimension]
        scores[position] = total
    return scores


@njit("void(float32[:, :], float32[:, :], int64[:], int64[:], int64[:, :], float64)", cache=True)
def _sgd_step(
    inp: np.ndarray,
    out: np.ndarray,
    context: np.ndarray,
    counts: np.ndarray,
    targets: np.ndarray,
    rate: float,
) -> None:
    """One mini-batch of skip-gram steps with negative sampling, in place: per event, the mean
    input vector of its ``counts`` rows of ``context`` against the output vectors of its
    ``targets`` (the item, then the negatives). Every step starts from the vectors before the
    batch; a row that repeats takes every one of its steps. Compiled: as numpy calls, a
    one-event batch cost thirty calls for a few hundred multiplications."""
    batch, width = targets.shape
    dimensions = inp.shape[1]
    hidden = np.zeros((batch, dimensions))
    errors = np.zeros((batch, width))
    start = 0
    for event in range(batch):
        for row in context[start : start + counts[event]]:
            hidden[event] += inp[row]
        hidden[event] /= counts[event]
        start += counts[event]
        for position in range(width):
            target = targets[event, position]
            if position and target == targets[event, 0]:
                continue  # a negative drawn equal to the item teaches nothing
            score = 0.0
            for dimension in range(dimensions):
                score += out[target, dimension] * hidden[event, dimension]
            errors[event, position] = (1.0 / (1.0 + np.exp(-score)) - (position == 0)) * rate
    context_steps = np.zeros((batch, dimensions))
    for event in range(batch):
        for position in range(width):
            context_steps[event] += errors[event, position] * out[targets[event, position]]
    for event in range(batch):
        for position in range(width):
            step = errors[event, position] * hidden[event]
            out[targets[event, position]] -= step.astype(np.float32)
    start = 0
    for event in range(batch):
        share = (context_steps[event] / counts[event]).astype(np.float32)
        for row in context[start : start + counts[event]]:
            inp[row] -= share
        start += counts[event]
