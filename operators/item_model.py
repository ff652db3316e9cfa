"""Item knowledge: co-visitation links, popularity and embeddings, learned one event at a time.

One :class:`ItemModel` holds what streamrec knows about items, for every item, in numpy rows:

- **Co-visitation.** Each event links its item both ways to the user's few previous items
  (:attr:`Observation.recent`), weighted by the weaker event and by the time between the two.
  An item keeps at most ``2 * neighbours`` links (pruned to the strongest ``neighbours``) in
  fixed slots of two arrays over all rows and, in three more, its strongest ``reply_neighbours``
  ones, re-sorted after ``reply_refresh`` updates: what candidate generation's compiled pass
  reads.
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

An observation's row lookups happen at once; its arithmetic (links, popularity) is queued and
applied in order by one compiled pass before anything is read (:meth:`ItemModel.flush`), with
the same result as applying it at once: every replica of a cluster learns every event, and
per-event Python work was most of what that replication cost.

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

import sys
import zlib
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
# Queued observations applied at once even if nothing reads them.
_QUEUE_LIMIT = 4096

#: One previous item of the user: (item_id, ts, weight).
Previous = tuple[str, int, float]
ItemModelSnapshot = dict[str, object]
#: An :class:`Observation`'s fields as a plain tuple (a named tuple's constructor is Python code).
ObservationFields = tuple[str, int, float, bool, tuple[Previous, ...], str | None]
#: Embedding steps: per step its item's row and how many context rows it has, and those rows.
Steps = tuple[np.ndarray, np.ndarray, np.ndarray]
_NO_STEPS: Steps = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64))


class Observation(NamedTuple):
    """One accepted event as the item model sees it (no user id: it is not needed here).

    Every event's observation crosses to every other worker, in an
    :class:`~operators.messages.ObservationBlock`."""

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
        #: Per row: its neighbour rows and stored link weights in ``2 * neighbours + 1`` slots
        #: (the last one fills only until the row is pruned), and how many slots are used.
        slots = 2 * config.neighbours + 1
        self.link_rows = np.zeros((capacity, slots), np.int32)
        self.link_weights = np.zeros((capacity, slots))
        self.link_count = np.zeros(capacity, np.int32)
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
        #: Per category index: its rows, ascending, while no row joins or leaves it (a scan of
        #: the whole catalog each time its popular items are sorted again cost more than the sort).
        self._members: dict[int, np.ndarray] = {}
        self.inp = np.zeros((capacity, config.dimensions), np.float32)
        self.out = np.zeros((capacity, config.dimensions), np.float32)
        self.ref = 0
        self.observed = 0
        self._recent = np.zeros(_RECENT_ITEMS, np.intp)
        self._rng = np.random.default_rng(config.seed)
        self._draws = np.zeros(0)
        self._draws_at = 0
        #: Observations not applied yet, flat: per observation (row, ts, weight, first,
        #: category index or -1, previous items), then (row, ts, weight) per previous item.
        self._queue: list[float] = []
        self._queued = 0
        self._half_lives = np.array(
            [
                config.link_half_life_ms,
                config.link_gap_half_life_ms,
                config.pop_short_half_life_ms,
                config.pop_long_half_life_ms,
            ],
            float,
        )
        #: Embedding steps not applied yet, in blocks of :data:`Steps`; see :meth:`flush`.
        self._steps: list[Steps] = []
        self._trending: np.ndarray = np.zeros(0, np.intp)
        #: The rows :meth:`similar` searches: the most popular at the last refresh (see
        #: :meth:`_refresh`) and the rows of the items that arrived since (added at the next
        #: read).
        self._pool = SimilarPool(config.dimensions, capacity)
        self._arrived: list[int] = []
        #: The rows whose popularity rose since the last refresh (a row once per event): only
        #: they can overtake the rows ranked then. Past ``similar_pool`` of them, the next
        #: refresh ranks every row instead (``_trending_at`` -1).
        self._risen: list[int] = []
        self._trending_at = -1

    def __len__(self) -> int:
        return len(self.rows)

    # -- learning ---------------------------------------------------------------------------

    def observe(self, observation: Observation | ObservationFields) -> None:
        """Learn one event: links, popularity and one embedding step (queued; see
        :meth:`flush`)."""
        item_id, ts, weight, first, recent, category_name = observation
        rows = self.rows
        if not rows:
            self.ref = ts
        elif (ts - self.ref) / self.config.pop_short_half_life_ms > _MAX_EXPONENT:
            self._rebase(ts)
        # A known item is the rule, and a call per row took 30 % of this method's time in a
        # profile: only a new item costs one.
        row = rows.get(item_id)
        if row is None:
            row = self._new_row(item_id, ts)
        category = -1
        if category_name is not None:
            category = self._category_of(category_name)
            # Compared with the stored category, which the queued observations have not changed
            # yet: the last change the queue makes to a row is always against it.
            stored = int(self.category[row])
            if category != stored:
                self._members.pop(category, None)
                self._members.pop(stored, None)
        queue = self._queue
        queue.extend((row, ts, weight, first, category, len(recent)))
        if first:
            self._risen.append(row)
        for other_id, other_ts, other_weight in recent:
            other = rows.get(other_id)
            if other is None:
                other = self._new_row(other_id, other_ts)
            queue.extend((other, other_ts, other_weight))
        self._queued += 1
        self.observed += 1
        if self._queued == _QUEUE_LIMIT:
            self._apply()  # a replica that serves nobody still holds a bounded queue
        if self.observed % self.config.sweep_every == 0:
            self._sweep(ts)
            self._prune_categories()

    def _apply(self) -> None:
        """Apply the queued observations, in order, and queue their embedding steps."""
        if not self._queued:
            return
        queue = np.array(self._queue, float)
        _observe(
            queue,
            self.link_rows,
            self.link_weights,
            self.link_count,
            self.mass,
            self._stale,
            self.short,
            self.long,
            self.last_ts,
            self.category,
            self._recent,
            self.observed - self._queued,
            self.ref,
            self._half_lives,
            self.config.neighbours,
        )
        if self.config.embeddings:
            steps = _embedding_steps(queue)
            if len(steps[0]):
                self._steps.append(steps)
        self._queue.clear()
        self._queued = 0
        if len(self._risen) > self.config.similar_pool:
            # A replica not read for this long ranks every row again, which costs as much.
            self._risen.clear()
            self._trending_at = -1

    def links_of(self, row: int) -> dict[int, float]:
        """The row's links: neighbour row -> stored weight."""
        self._apply()
        count = self.link_count[row]
        return dict(
            zip(
                self.link_rows[row, :count].tolist(),
                self.link_weights[row, :count].tolist(),
                strict=True,
            )
        )

    def _category_of(self, name: str) -> int:
        index = self._category_index.get(name)
        if index is None:
            index = self._category_index[name] = len(self.category_names)
            self.category_names.append(sys.intern(name))
        return index

    def flush(self) -> None:
        """Apply the events observed since the last read: their links and popularity, then their
        embedding steps.

        Steps are batched (one compiled mini-batch, :func:`_sgd_step`) and every reader of
        embeddings calls this first, so a list never misses an event; within a batch the steps
        all start from the vectors before it, which SGD does not mind.
        """
        self._apply()
        if not self._steps:
            return
        rows, counts, context = self._pending_steps()
        self._steps.clear()
        draws = self._draw(self.config.negatives * len(rows))
        pool = self._pool
        _sgd_step(
            self.inp,
            self.out,
            context,
            counts,
            rows,
            self._recent,
            draws,
            min(self.observed, _RECENT_ITEMS),
            self.config.embedding_rate,
            pool.vectors,
            pool.position,
        )

    def _pending_steps(self) -> Steps:
        """The embedding steps not applied yet, as one block."""
        if len(self._steps) > 1:
            rows, counts, context = zip(*self._steps, strict=True)
            self._steps = [(np.concatenate(rows), np.concatenate(counts), np.concatenate(context))]
        return self._steps[0] if self._steps else _NO_STEPS

    def _draw(self, count: int) -> np.ndarray:
        """The next ``count`` uniform draws in [0, 1), from a block drawn ahead."""
        if self._draws_at + count > len(self._draws):
            self._draws = self._rng.random(max(_RECENT_ITEMS, count))
            self._draws_at = 0
        start = self._draws_at
        self._draws_at += count
        return self._draws[start : start + count]

    # -- rows and memory --------------------------------------------------------------------

    def _new_row(self, item_id: str, ts: int) -> int:
        """A row for an item the model does not know, first seen at ``ts``."""
        # One string per item, shared with the users' histories (which intern theirs too).
        item_id = sys.intern(item_id)
        if self._free:
            row = self._free.pop()
            self.ids[row] = item_id
        else:
            row = len(self.ids)
            self.ids.append(item_id)
            if row >= len(self.mass):
                self._grow(2 * len(self.mass))
        self.rows[item_id] = row
        self._arrived.append(row)
        self.top_count[row] = self.link_count[row] = self._stale[row] = 0
        self.mass[row] = self.short[row] = self.long[row] = 0.0
        self.first_ts[row] = ts
        self.category[row] = -1
        seed = zlib.crc32(item_id.encode()) ^ self.config.seed
        init = np.random.default_rng(seed).normal(0.0, _INIT_SCALE, (2, self.config.dimensions))
        self.inp[row], self.out[row] = init
        if self._pool.position[row] >= 0:  # a reused row, until the next refresh
            self._pool.update(np.array([row]), self.out)
        return row

    def _grow(self, capacity: int) -> None:
        def grown(array: np.ndarray) -> np.ndarray:
            bigger = np.zeros((capacity, *array.shape[1:]), array.dtype)
            bigger[: len(array)] = array
            return bigger

        self.link_rows, self.link_weights = grown(self.link_rows), grown(self.link_weights)
        self.link_count = grown(self.link_count)
        self.top_rows, self.top_weights = grown(self.top_rows), grown(self.top_weights)
        self.top_count, self._stale = grown(self.top_count), grown(self._stale)
        self.mass, self.short, self.long = grown(self.mass), grown(self.short), grown(self.long)
        self.last_ts, self.first_ts = grown(self.last_ts), grown(self.first_ts)
        self.category = grown(self.category)
        self.inp, self.out = grown(self.inp), grown(self.out)
        self._pool.grow(capacity)

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
        dropped = np.array(sorted(gone), np.int64)
        self.link_count[dropped] = self.top_count[dropped] = 0
        self.mass[dropped] = self.short[dropped] = self.long[dropped] = 0.0
        self.category[dropped] = -1
        is_gone = np.zeros(live, np.bool_)
        is_gone[dropped] = True
        changed = _unlink(is_gone, self.link_rows, self.link_weights, self.link_count)
        self._stale[changed] = self.config.reply_refresh  # re-sorted now
        self.refresh_neighbours(changed)
        self._recent[np.isin(self._recent, dropped)] = 0
        self._free.extend(sorted(gone, reverse=True))
        self._trending_at = -1

    def _prune_categories(self) -> None:
        """Forget the categories no live item has any more (renumbering the others), also when
        items change category; and the popular items of each, whose rows may have been
        reused."""
        live = self.category[: len(self.ids)]
        used = np.unique(live[live >= 0])
        self._category_trending.clear()
        self._members.clear()
        if len(used) == len(self.category_names):
            return
        renumber = np.full(len(self.category_names) + 1, -1, np.int32)
        renumber[used] = np.arange(len(used), dtype=np.int32)
        self.category[: len(self.ids)] = renumber[live]
        self.category_names = [self.category_names[index] for index in used.tolist()]
        self._category_index = {name: index for index, name in enumerate(self.category_names)}

    def _rebase(self, ts: int) -> None:
        self._apply()
        config = self.config
        age = ts - self.ref
        link_factor = 0.5 ** (age / config.link_half_life_ms)
        self.link_weights *= link_factor
        self.top_weights *= link_factor
        self.mass *= link_factor
        self.short *= 0.5 ** (age / config.pop_short_half_life_ms)
        self.long *= 0.5 ** (age / config.pop_long_half_life_ms)
        self.ref = ts

    # -- reading ----------------------------------------------------------------------------

    def neighbours(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        """The item's strongest neighbours (rows) and their stored link weights."""
        self._apply()
        self.refresh_neighbours(np.array([row]))
        count = self.top_count[row]
        return self.top_rows[row, :count], self.top_weights[row, :count]

    def refresh_neighbours(self, rows: np.ndarray) -> None:
        """Re-sort the neighbours of those of ``rows`` that changed since their last sort, when
        read while they have few links, else after ``reply_refresh`` changes (call
        :meth:`flush` first)."""
        _refresh_neighbours(
            np.asarray(rows, np.int64),
            self.link_rows,
            self.link_weights,
            self.link_count,
            self.top_rows,
            self.top_weights,
            self.top_count,
            self._stale,
            self.config.reply_refresh,
        )

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
        """Re-rank the trending items and the similarity pool every ``trend_refresh`` events.

        Popularity only rises by an observation and decays at one rate for every row (a rebase
        scales them all), and a sweep, the only thing that drops a row, asks for a full ranking:
        so the rows ranked last time and the ones that rose or arrived since hold the best ones
        now (up to ties). Ranking those instead of the catalog keeps a refresh's cost flat as
        the catalog grows: 225 against 830 us with 21,604 live items, 52 us with 3,658
        (``tests/benchmarks/refresh.py``).
        """
        self._apply()
        if self._trending_at >= 0 and self.observed - self._trending_at < self.config.trend_refresh:
            return
        size = self.config.similar_pool
        if self._trending_at < 0:
            live = np.delete(np.arange(len(self.ids)), self._free)
            pooled = live
            if len(pooled) > size:
                pooled = np.sort(pooled[np.argpartition(-self.long[pooled], size - 1)[:size]])
            self._pool.reset(pooled, self.out)
            self._trending = self._most_popular(live, self.config.trending)
        else:
            # No row was freed since the last ranking (a sweep asks for a full one): all live.
            rising = np.unique(np.array(self._risen + self._arrived, np.intp))
            self._rank_pool(rising[self._pool.position[rising] < 0], size)
            ranked = np.union1d(self._trending, rising)
            self._trending = self._most_popular(ranked, self.config.trending)
        self._arrived.clear()
        self._risen.clear()
        self._trending_at = self.observed

    def _rank_pool(self, outside: np.ndarray, size: int) -> None:
        """Keep the ``size`` best of the pool and the rows ``outside`` it (by long-term
        popularity). The rows outside are appended; when the pool then holds more than ``size``
        and its first ``size`` rows are the best, the rest are cut off, and only when a later row
        is among the best is the pool copied again, in row order. Moving only the rows that
        leave or join saved that copy too but made each search slower (32.0 against 26.6 us on
        a 30,000-event prefix of the million-user stream; why was not found)."""
        pool = self._pool
        if len(outside):
            pool.extend(outside, self.out)
        if pool.size <= size:
            return
        best = np.argpartition(-self.long[pool.rows], size - 1)[:size]
        if best.max() < size:
            pool.truncate(size)
        else:
            pool.reset(np.sort(pool.rows[best]), self.out)

    def category_trending(self, category: int) -> np.ndarray:
        """Rows of the ``category_top`` most popular items (short half-life) of one category
        index, best first; re-sorted as often as :meth:`trending`."""
        self._apply()
        cached = self._category_trending.get(category)
        if cached is None or self.observed - cached[1] >= self.config.trend_refresh:
            members = self._members.get(category)
            if members is None:
                members = np.flatnonzero(self.category[: len(self.ids)] == category)
                self._members[category] = members
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

    def similar(self, interest: np.ndarray, count: int) -> np.ndarray:
        """The ``count`` rows whose output vectors score highest against ``interest``, best
        first, among the ``similar_pool`` items with the most distinct users at the last
        :meth:`_refresh` and the items that arrived since (all live items in a smaller
        catalog): the cost of a list does not grow with the catalog."""
        pool = self._similar_pool()
        count = min(count, pool.size)
        if count <= 0:
            return np.zeros(0, np.intp)
        self.flush()
        return _most_similar(
            pool.vectors, pool.rows, np.ascontiguousarray(interest, np.float32), count
        )

    def _similar_pool(self) -> SimilarPool:
        self._refresh()
        if self._arrived:
            self._pool.extend(np.array(self._arrived, np.intp), self.out)
            self._arrived.clear()
        return self._pool

    # -- snapshots --------------------------------------------------------------------------

    def snapshot(self) -> ItemModelSnapshot:
        """Compact: arrays as bytes, links as three flat arrays. The embedding steps not applied
        yet are saved as they are: flushing here would make the model depend on when the
        runtime snapshots (applying the queued links and popularity does not)."""
        self._apply()
        live = len(self.ids)
        linked = np.arange(self.link_rows.shape[1]) < self.link_count[:live, None]
        sources = np.repeat(np.arange(live, dtype=np.int32), self.link_count[:live])
        filled = np.arange(self.config.reply_neighbours) < self.top_count[:live, None]

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
            "links": (
                sources.tobytes(),
                self.link_rows[:live][linked].tobytes(),
                self.link_weights[:live][linked].tobytes(),
            ),
            "recent": self._recent.tobytes(),
            "rng": self._rng.bit_generator.state,
            "draws": (self._draws.tobytes(), self._draws_at),
            "pending": tuple(part.tobytes() for part in self._pending_steps()),
            # The caches as they are, so a restored model reads exactly what this one would.
            "stale": self._stale[:live].tobytes(),
            "top": (
                self.top_count[:live].tobytes(),
                self.top_rows[:live][filled].tobytes(),
                self.top_weights[:live][filled].tobytes(),
            ),
            "trending": (
                self._trending.astype(np.int32).tobytes(),
                np.concatenate((self._pool.rows, self._arrived)).astype(np.int32).tobytes(),
                self._trending_at,
                np.array(self._risen, np.int32).tobytes(),
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
        sources, targets, weights = (
            np.frombuffer(raw, dtype)  # type: ignore[arg-type]
            for raw, dtype in zip(snapshot["links"], (np.int32, np.int32, float), strict=True)  # type: ignore[call-overload]
        )
        _restore_links(
            sources.astype(np.int64),
            targets.copy(),  # writable, as the kernel's signature wants
            weights.copy(),
            model.link_rows,
            model.link_weights,
            model.link_count,
            config.neighbours,
        )
        model._stale[:live] = np.frombuffer(snapshot["stale"], np.int32)  # type: ignore[arg-type]
        lengths, top_rows, top_weights = (
            np.frombuffer(raw, dtype)  # type: ignore[arg-type]
            for raw, dtype in zip(snapshot["top"], (np.int32, np.int32, float), strict=True)  # type: ignore[call-overload]
        )
        filled = np.arange(config.reply_neighbours) < lengths[:, None]
        model.top_count[:live] = lengths
        model.top_rows[:live][filled] = top_rows
        model.top_weights[:live][filled] = top_weights
        trending, pool, model._trending_at, *risen = snapshot["trending"]  # type: ignore[misc]
        model._trending = np.frombuffer(trending, np.int32).astype(np.intp)
        model._pool.reset(np.frombuffer(pool, np.int32).astype(np.intp), model.out)
        if risen:
            model._risen = np.frombuffer(risen[0], np.int32).tolist()
        else:  # a snapshot from before the rows that rose were kept: rank them all
            model._trending_at = -1
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
        steps = tuple(np.frombuffer(part, np.int64).copy() for part in snapshot["pending"])  # type: ignore[attr-defined]
        model._steps = [steps] if len(steps[0]) else []  # type: ignore[list-item]
        return model


class SimilarPool:
    """The rows :meth:`ItemModel.similar` searches, with a copy of their output vectors in one
    block that every write to those vectors updates: a read of 5,000 rows scattered over a
    catalog of 100,000 items cost two to four and a half times a read of the block (the rows
    miss the cache), and a list reads the pool once.

    >>> out = np.arange(12, dtype=np.float32).reshape(6, 2)
    >>> pool = SimilarPool(2, 6)
    >>> pool.reset(np.array([1, 4]), out)
    >>> pool.extend(np.array([5]), out)
    >>> out[4] = -1.0
    >>> pool.update(np.array([0, 4]), out)
    >>> pool.rows.tolist(), pool.vectors.tolist()
    ([1, 4, 5], [[2.0, 3.0], [-1.0, -1.0], [10.0, 11.0]])
    >>> pool.truncate(1)
    >>> pool.rows.tolist(), pool.position.tolist()
    ([1], [-1, 0, -1, -1, -1, -1])
    """

    def __init__(self, dimensions: int, capacity: int) -> None:
        self._rows = np.zeros(0, np.intp)
        self._vectors = np.zeros((0, dimensions), np.float32)
        self.size = 0
        #: Per model row: its position in the pool, -1 when it is not in it.
        self.position = np.full(capacity, -1, np.int64)

    @property
    def rows(self) -> np.ndarray:
        return self._rows[: self.size]

    @property
    def vectors(self) -> np.ndarray:
        return self._vectors[: self.size]

    def reset(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Make ``rows`` (distinct) the pool."""
        self.position[self.rows] = -1
        self.size = 0
        self.extend(rows, out)

    def extend(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Add ``rows``, distinct and not in the pool, at its end."""
        end = self.size + len(rows)
        if end > len(self._rows):
            capacity = max(end, 2 * len(self._rows))
            self._rows = np.resize(self._rows, capacity)
            self._vectors = np.resize(self._vectors, (capacity, self._vectors.shape[1]))
        self._rows[self.size : end] = rows
        self._vectors[self.size : end] = out[rows]
        self.position[rows] = np.arange(self.size, end)
        self.size = end

    def truncate(self, size: int) -> None:
        """Keep the first ``size`` rows."""
        self.position[self._rows[size : self.size]] = -1
        self.size = min(self.size, size)

    def update(self, rows: np.ndarray, out: np.ndarray) -> None:
        """Copy the output vectors of those of ``rows`` that are in the pool."""
        _copy_rows(self._vectors, self.position, out, rows.astype(np.int64, copy=False))

    def grow(self, capacity: int) -> None:
        self.position = np.concatenate(
            (self.position, np.full(capacity - len(self.position), -1, np.int64))
        )


@njit("void(float32[:, ::1], int64[:], float32[:, :], int64[:])", cache=True)
def _copy_rows(
    vectors: np.ndarray, position: np.ndarray, out: np.ndarray, rows: np.ndarray
) -> None:
    for row in rows:
        at = position[row]
        if at >= 0:
            vectors[at] = out[row]


@njit("float64[:](float32[:, ::1], float32[::1])", cache=True, fastmath=True)
def _similarities(vectors: np.ndarray, interest: np.ndarray) -> np.ndarray:
    """Each vector against ``interest``, summed in float32."""
    scores = np.empty(len(vectors))
    for position in range(len(vectors)):
        total = np.float32(0.0)
        for dimension in range(len(interest)):
            total += vectors[position, dimension] * interest[dimension]
        scores[position] = total
    return scores


@njit("int64[:](float32[:, ::1], int64[:], float32[::1], int64)", cache=True)
def _most_similar(
    vectors: np.ndarray, rows: np.ndarray, interest: np.ndarray, count: int
) -> np.ndarray:
    """The ``count`` of ``rows`` whose ``vectors`` score highest against ``interest``, best
    first (one compiled call: the scores never come back to Python)."""
    scores = _similarities(vectors, interest)
    return rows[best(scores, rows, count)]


@njit(
    "void(float32[:, :], float32[:, :], int64[:], int64[:], int64[:], int64[:], float64[:], int64,"
    " float64, float32[:, ::1], int64[:])",
    cache=True,
)
def _sgd_step(
    inp: np.ndarray,
    out: np.ndarray,
    context: np.ndarray,
    counts: np.ndarray,
    rows: np.ndarray,
    recent: np.ndarray,
    draws: np.ndarray,
    filled: int,
    rate: float,
    pool: np.ndarray,
    pool_position: np.ndarray,
) -> None:
    """One mini-batch of skip-gram steps with negative sampling, in place: per event, the mean
    input vector of its ``counts`` rows of ``context`` against the output vectors of its item
    (``rows``) and of its negatives, the entries of ``recent`` (its first ``filled`` ones) at
    the positions ``draws`` (uniform in [0, 1), as many per event as there are negatives)
    pick. Every step starts from the vectors before the batch; a row that repeats takes every
    one of its steps. The changed output vectors are copied to their place in the similarity
    ``pool`` (``pool_position`` per row, -1 when not in it). Compiled, in loops that allocate
    nothing per event: as numpy calls, a one-event batch cost thirty calls for a few hundred
    multiplications, and vector temporaries per event still cost half the compiled time."""
    batch = len(rows)
    width = len(draws) // batch + 1
    dimensions = inp.shape[1]
    targets = np.empty((batch, width), np.int64)
    scale = float(max(filled, 1))
    for event in range(batch):
        targets[event, 0] = rows[event]
        for negative in range(1, width):
            targets[event, negative] = recent[
                np.int64(draws[event * (width - 1) + negative - 1] * scale)
            ]
    hidden = np.zeros((batch, dimensions))
    errors = np.zeros((batch, width))
    start = 0
    for event in range(batch):
        count = counts[event]
        for row in context[start : start + count]:
            for dimension in range(dimensions):
                hidden[event, dimension] += inp[row, dimension]
        for dimension in range(dimensions):
            hidden[event, dimension] /= count
        start += count
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
            error, target = errors[event, position], targets[event, position]
            for dimension in range(dimensions):
                context_steps[event, dimension] += error * out[target, dimension]
    for event in range(batch):
        for position in range(width):
            error, target = errors[event, position], targets[event, position]
            for dimension in range(dimensions):
                out[target, dimension] -= np.float32(error * hidden[event, dimension])
    start = 0
    for event in range(batch):
        count = counts[event]
        for row in context[start : start + count]:
            for dimension in range(dimensions):
                inp[row, dimension] -= np.float32(context_steps[event, dimension] / count)
        start += count
    _copy_rows(pool, pool_position, out, targets.ravel())


@njit("UniTuple(int64[:], 3)(float64[:])", cache=True)
def _embedding_steps(queue: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The embedding steps of queued observations (:attr:`ItemModel._queue`'s layout): one per
    observation with previous items, whose rows are its context."""
    steps = contexts = position = 0
    while position < len(queue):
        previous = np.int64(queue[position + 5])
        steps += previous > 0
        contexts += previous
        position += 6 + 3 * previous
    rows = np.empty(steps, np.int64)
    counts = np.empty(steps, np.int64)
    context = np.empty(contexts, np.int64)
    step = filled = position = 0
    while position < len(queue):
        previous = np.int64(queue[position + 5])
        if previous:
            rows[step] = np.int64(queue[position])
            counts[step] = previous
            for index in range(previous):
                context[filled + index] = np.int64(queue[position + 6 + 3 * index])
            step += 1
            filled += previous
        position += 6 + 3 * previous
    return rows, counts, context


@njit("void(int32[:, :], float64[:, :], int64, int64, int64)", cache=True)
def _prune(
    link_rows: np.ndarray, link_weights: np.ndarray, row: int, count: int, neighbours: int
) -> None:
    """Keep the row's ``neighbours`` strongest of its first ``count`` links, strongest first
    (the earlier of equal ones)."""
    order = np.argsort(-link_weights[row, :count], kind="mergesort")[:neighbours]
    kept_rows = link_rows[row][order]
    kept_weights = link_weights[row][order]
    link_rows[row, :neighbours] = kept_rows
    link_weights[row, :neighbours] = kept_weights


@njit(cache=True)
def _link(
    link_rows: np.ndarray,
    link_weights: np.ndarray,
    link_count: np.ndarray,
    mass: np.ndarray,
    stale: np.ndarray,
    source: int,
    target: int,
    weight: float,
    neighbours: int,
) -> None:
    count = link_count[source]
    found = False
    for slot in range(count):
        if link_rows[source, slot] == target:
            link_weights[source, slot] += weight
            found = True
            break
    if not found:
        link_rows[source, count] = target
        link_weights[source, count] = weight
        count += 1
        if count > 2 * neighbours:
            _prune(link_rows, link_weights, source, count, neighbours)
            count = neighbours
        link_count[source] = count
    mass[source] += weight
    stale[source] += 1


@njit(
    "void(float64[:], int32[:, :], float64[:, :], int32[:], float64[:], int32[:], float64[:],"
    " float64[:], int64[:], int32[:], int64[:], int64, float64, float64[:], int64)",
    cache=True,
)
def _observe(
    queue: np.ndarray,
    link_rows: np.ndarray,
    link_weights: np.ndarray,
    link_count: np.ndarray,
    mass: np.ndarray,
    stale: np.ndarray,
    short: np.ndarray,
    long: np.ndarray,
    last_ts: np.ndarray,
    category: np.ndarray,
    recent: np.ndarray,
    observed: int,
    ref: float,
    half_lives: np.ndarray,
    neighbours: int,
) -> None:
    """Apply the queued observations in order (the layout is :attr:`ItemModel._queue`'s;
    ``half_lives``: of links, of the gap between linked events, and of short and long
    popularity); ``observed``: the count before the first; ``ref``: the decay's reference
    time."""
    link_half_life, gap_half_life, short_half_life, long_half_life = half_lives
    position = 0
    number = observed
    while position < len(queue):
        row = np.int64(queue[position])
        ts = queue[position + 1]
        weight = queue[position + 2]
        if last_ts[row] < np.int64(ts):
            last_ts[row] = np.int64(ts)
        if queue[position + 4] >= 0:
            category[row] = np.int32(queue[position + 4])
        if queue[position + 3]:
            short[row] += weight * 2.0 ** ((ts - ref) / short_half_life)
            long[row] += weight * 2.0 ** ((ts - ref) / long_half_life)
        boost = 2.0 ** ((ts - ref) / link_half_life)
        previous = np.int64(queue[position + 5])
        position += 6
        for _ in range(previous):
            other = np.int64(queue[position])
            gap = abs(ts - queue[position + 1])
            link = min(weight, queue[position + 2]) * 0.5 ** (gap / gap_half_life) * boost
            _link(link_rows, link_weights, link_count, mass, stale, row, other, link, neighbours)
            _link(link_rows, link_weights, link_count, mass, stale, other, row, link, neighbours)
            position += 3
        recent[number % len(recent)] = row
        number += 1


@njit(
    "void(int64[:], int32[:, :], float64[:, :], int32[:], int32[:, :], float64[:, :], int32[:],"
    " int32[:], int64)",
    cache=True,
)
def _refresh_neighbours(
    rows: np.ndarray,
    link_rows: np.ndarray,
    link_weights: np.ndarray,
    link_count: np.ndarray,
    top_rows: np.ndarray,
    top_weights: np.ndarray,
    top_count: np.ndarray,
    stale: np.ndarray,
    refresh: int,
) -> None:
    """Copy the strongest links (all when fewer than the cache holds) of each of ``rows`` that
    changed ``refresh`` times since its last sort, or changed at all while it has at most as
    many links as the cache holds, to the neighbour cache."""
    keep = top_rows.shape[1]
    for row in rows:
        changes = stale[row]
        count = link_count[row]
        if changes == 0 or (changes < refresh and count > keep):
            continue
        if count > keep:
            order = np.argsort(-link_weights[row, :count], kind="mergesort")[:keep]
            for position in range(keep):
                top_rows[row, position] = link_rows[row, order[position]]
                top_weights[row, position] = link_weights[row, order[position]]
            count = keep
        else:
            top_rows[row, :count] = link_rows[row, :count]
            top_weights[row, :count] = link_weights[row, :count]
        top_count[row] = count
        stale[row] = 0


@njit("int64[:](boolean[:], int32[:, :], float64[:, :], int32[:])", cache=True)
def _unlink(
    gone: np.ndarray, link_rows: np.ndarray, link_weights: np.ndarray, link_count: np.ndarray
) -> np.ndarray:
    """Drop every link to a ``gone`` row; the rows that lost one."""
    changed = np.zeros(len(gone), np.bool_)
    for row in range(len(gone)):
        count = link_count[row]
        kept = 0
        for slot in range(count):
            if not gone[link_rows[row, slot]]:
                link_rows[row, kept] = link_rows[row, slot]
                link_weights[row, kept] = link_weights[row, slot]
                kept += 1
        changed[row] = kept < count
        link_count[row] = kept
    return np.flatnonzero(changed)


@njit(
    "void(int64[:], int32[:], float64[:], int32[:, :], float64[:, :], int32[:], int64)", cache=True
)
def _restore_links(
    sources: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray,
    link_rows: np.ndarray,
    link_weights: np.ndarray,
    link_count: np.ndarray,
    neighbours: int,
) -> None:
    """Put a snapshot's links back in their slots, in order (pruned, should the snapshot come
    from a model that kept more of them)."""
    slots = link_rows.shape[1]
    for index in range(len(sources)):
        row = sources[index]
        count = link_count[row]
        if count == slots:
            _prune(link_rows, link_weights, row, count, neighbours)
            count = neighbours
        link_rows[row, count] = targets[index]
        link_weights[row, count] = weights[index]
        link_count[row] = count + 1
