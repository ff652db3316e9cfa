"""Prequential evaluation: score the lists a recommender hands out against what users do next.

Events are replayed in timestamp order (a stable sort, so ties keep their file order). All events
of one user with one timestamp form a *basket*. Each distinct item of a basket that the user has
not interacted with before is one *target*; it is a hit when it is in the list the user holds
when the basket begins: what the model answers to ``recommend(user, k)`` right then, having
learned every earlier event (a model may define ``catch_up(user, ts)``, called first: the engine
closes the user's finished window there, as the dataflow does when the user's next event
arrives). A user's first basket has no list and misses every target. Only then are the basket's
events learned, in stream order, so a model never sees a target before it is scored.
``forget_user`` events are learned too (the model drops the user) and the evaluator forgets the
user's interactions and list.

The same protocol scores *emitted* lists (the dataflow's output, see :func:`read_emitted`): each
basket is scored against the user's latest list with ``as_of`` strictly before the basket's
timestamp. Live models and emitted lists can be scored in one pass over the same events.

Metrics, with ``rank`` the 1-based position of a target in the top ``k`` of the list:

* ``hr@k``: hits / targets.
* ``mrr@k``: the mean over targets of ``1 / rank`` (0 when not in the top ``k``).
* ``ndcg@k``: binary relevance, averaged over baskets with at least one target:
  ``sum(1 / log2(rank + 1) for hits) / sum(1 / log2(r + 1) for r in 1..min(targets, k))``.
* ``coverage``: distinct items in the lists the baskets were scored against / distinct items in
  the events.
* ``targets``: the number of targets.
* ``events_per_s``: events / seconds the model spent in its own ``learn`` and ``recommend``
  (None for emitted lists, whose cost is not seen here).

Plus a sliding-window curve: the hit rate of the last ``window`` targets, sampled every
``every`` targets and after the last one, with the timestamp of the basket it was sampled in.

>>> from operators.events import Event
>>> class Popular:
...     name = "popular"
...     def __init__(self):
...         self.counts, self.seen = {}, {}
...     def learn(self, event):
...         self.counts[event.item_id] = self.counts.get(event.item_id, 0) + 1
...         self.seen.setdefault(event.user_id, set()).add(event.item_id)
...     def recommend(self, user_id, k):
...         fresh = [i for i in self.counts if i not in self.seen.get(user_id, ())]
...         return sorted(fresh, key=lambda i: -self.counts[i])[:k]
>>> stream = [Event("ann", "tea", 1, "purchase"), Event("ann", "jam", 1, "purchase"),
...           Event("bob", "tea", 2, "purchase"), Event("bob", "jam", 3, "purchase"),
...           Event("bob", "tea", 4, "purchase")]
>>> report = prequential(stream, [Popular()], k=1)["popular"]
>>> {name: round(value, 3) for name, value in report.metrics().items() if name != "events_per_s"}
{'hr@1': 0.25, 'ndcg@1': 0.333, 'mrr@1': 0.25, 'coverage': 0.5, 'targets': 4}

Ann's basket (tea and jam at ts 1) and Bob's tea are scored before they have a list: three
misses. After his tea Bob is offered jam, a hit. His second tea is no target (already bought).
NDCG averages the three baskets: (0 + 0 + 1) / 3.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter
from typing import Protocol

import orjson

from operators.events import Event


class OnlineRecommender(Protocol):
    """A model that learns one event at a time and hands out top-``k`` lists of item ids."""

    name: str

    def learn(self, event: Event) -> None: ...

    def recommend(self, user_id: str, k: int) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class EmittedList:
    """One record of the dataflow's output; ``items`` is None for a tombstone (user forgotten)."""

    user_id: str
    items: tuple[str, ...] | None
    as_of: int


@dataclass(frozen=True, slots=True)
class Curve:
    """Sliding-window hit rate: over the last ``window`` targets, sampled every ``every``."""

    window: int = 5_000
    every: int = 1_000


@dataclass
class Report:
    """What one model (or one file of emitted lists) scored; see the module docstring."""

    name: str
    k: int
    targets: int = 0
    hits: int = 0
    baskets: int = 0
    reciprocal_ranks: float = 0.0
    ndcg_sum: float = 0.0
    events: int = 0
    catalog: int = 0
    recommended: set[str] = field(default_factory=set)
    seconds: float | None = 0.0
    #: ``(ts, hit rate of the last window targets)`` points.
    curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def hr(self) -> float:
        return self.hits / self.targets if self.targets else 0.0

    @property
    def mrr(self) -> float:
        return self.reciprocal_ranks / self.targets if self.targets else 0.0

    @property
    def ndcg(self) -> float:
        return self.ndcg_sum / self.baskets if self.baskets else 0.0

    @property
    def coverage(self) -> float:
        return len(self.recommended) / self.catalog if self.catalog else 0.0

    @property
    def events_per_s(self) -> float | None:
        if self.seconds is None:
            return None
        return self.events / self.seconds if self.seconds > 0 else math.inf

    def metrics(self) -> dict[str, float | int | None]:
        """The headline figures, keyed ``hr@k``, ``ndcg@k``, ``mrr@k``, ``coverage``, ..."""
        return {
            f"hr@{self.k}": self.hr,
            f"ndcg@{self.k}": self.ndcg,
            f"mrr@{self.k}": self.mrr,
            "coverage": self.coverage,
            "targets": self.targets,
            "events_per_s": self.events_per_s,
        }


class _Scorer:
    """Accumulates one report: basket scores, handed-out items and the sliding window."""

    def __init__(self, report: Report, curve: Curve) -> None:
        self.report = report
        self._ideal = [0.0]
        for rank in range(1, report.k + 1):
            self._ideal.append(self._ideal[-1] + 1.0 / math.log2(rank + 1))
        self._window: deque[bool] = deque(maxlen=curve.window)
        self._window_hits = 0
        self._every = curve.every
        self._last_ts = 0

    def handed_out(self, items: Sequence[str]) -> None:
        self.report.recommended.update(items[: self.report.k])

    def score(self, ts: int, targets: Sequence[str], ranked: Sequence[str] | None) -> None:
        report = self.report
        ranks = {item: rank for rank, item in enumerate(ranked[: report.k] if ranked else (), 1)}
        dcg = 0.0
        window = self._window
        for target in targets:
            rank = ranks.get(target)
            if rank is not None:
                report.hits += 1
                report.reciprocal_ranks += 1.0 / rank
                dcg += 1.0 / math.log2(rank + 1)
            if len(window) == window.maxlen:
                self._window_hits -= window[0]
            window.append(rank is not None)
            self._window_hits += rank is not None
            report.targets += 1
            if report.targets % self._every == 0:
                report.curve.append((ts, self._window_hits / len(window)))
        report.baskets += 1
        report.ndcg_sum += dcg / self._ideal[min(len(targets), report.k)]
        self._last_ts = ts

    def close(self) -> None:
        """End the curve at the last target."""
        report = self.report
        if report.targets % self._every:
            report.curve.append((self._last_ts, self._window_hits / len(self._window)))


class _Live:
    """Drives one model: times its calls and asks it for a list at each returning user's basket."""

    def __init__(self, model: OnlineRecommender, scorer: _Scorer) -> None:
        self.model = model
        self.scorer = scorer
        self._k = scorer.report.k
        self._seconds = 0.0
        self._catch_up: Callable[[str, int], None] | None = getattr(model, "catch_up", None)

    def advance(self, ts: int) -> None:
        """Live lists need no catching up."""

    def list_for(self, user_id: str, ts: int, returning: bool) -> list[str] | None:
        if not returning:
            return None
        started = time.perf_counter()
        if self._catch_up is not None:
            self._catch_up(user_id, ts)
        ranked = self.model.recommend(user_id, self._k)
        self._seconds += time.perf_counter() - started
        self.scorer.handed_out(ranked)
        return ranked

    def learn(self, event: Event) -> None:
        started = time.perf_counter()
        self.model.learn(event)
        self._seconds += time.perf_counter() - started

    def finish(self) -> None:
        self.scorer.report.seconds = self._seconds


class _Emitted:
    """Replays emitted lists alongside the events: each basket sees the lists from before it.

    The dataflow serves a window when the user's next event arrives, so its output is in
    serving order, not in ``as_of`` order: the records are applied sorted by ``as_of`` (ties in
    file order, so a user's later record wins).
    """

    def __init__(self, lists: Iterable[EmittedList], scorer: _Scorer) -> None:
        self.scorer = scorer
        scorer.report.seconds = None
        self._pending: Iterator[EmittedList] = iter(sorted(lists, key=attrgetter("as_of")))
        self._next: EmittedList | None = next(self._pending, None)
        self._lists: dict[str, EmittedList] = {}

    def advance(self, ts: int) -> None:
        while self._next is not None and self._next.as_of < ts:
            self._lists[self._next.user_id] = self._next
            self._next = next(self._pending, None)

    def list_for(self, user_id: str, ts: int, returning: bool) -> tuple[str, ...] | None:
        held = self._lists.get(user_id)
        if held is None or held.items is None:
            return None
        # Coverage counts the lists a basket met, as a live model is asked for them.
        self.scorer.handed_out(held.items)
        return held.items

    def learn(self, event: Event) -> None:
        """The emitted lists already reflect the events (a forget arrives as a tombstone)."""

    def finish(self) -> None:
        """Lists after the last basket score nothing."""


def prequential(
    events: Iterable[Event],
    models: Sequence[OnlineRecommender],
    k: int = 10,
    *,
    emitted: Iterable[EmittedList] | None = None,
    emitted_name: str = "emitted",
    curve: Curve | None = None,
    progress: Callable[[int, int], None] | None = None,
    progress_every: int = 50_000,
) -> dict[str, Report]:
    """Score every model (and the ``emitted`` lists, if given) in one pass; reports by name.

    ``progress(done, total)`` is called about every ``progress_every`` events.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    curve = curve or Curve()
    ordered = sorted(events, key=attrgetter("ts"))
    drivers: list[_Live | _Emitted] = []
    for model in models:
        if any(driver.scorer.report.name == model.name for driver in drivers):
            raise ValueError(f"two models are named {model.name!r}")
        drivers.append(_Live(model, _Scorer(Report(model.name, k), curve)))
    if emitted is not None:
        drivers.append(_Emitted(emitted, _Scorer(Report(emitted_name, k), curve)))

    seen: dict[str, set[str]] = {}
    done = 0
    for ts, same_time in groupby(ordered, key=attrgetter("ts")):
        group = list(same_time)
        # Each user's distinct items at this ts (a dict keeps their order).
        baskets: dict[str, dict[str, None]] = {}
        for event in group:
            items = baskets.setdefault(event.user_id, {})
            if event.item_id is not None:
                items[event.item_id] = None
        for driver in drivers:
            driver.advance(ts)
        for event in group:
            user = event.user_id
            basket = baskets.pop(user, None)
            if basket is not None:
                known = seen.get(user)
                targets = [item for item in basket if known is None or item not in known]
                if targets:
                    for driver in drivers:
                        ranked = driver.list_for(user, ts, returning=known is not None)
                        driver.scorer.score(ts, targets, ranked)
            if event.is_forget:
                seen.pop(user, None)
            else:
                seen.setdefault(user, set()).add(event.item_id)
            for driver in drivers:
                driver.learn(event)
        done += len(group)
        if progress is not None and done // progress_every != (done - len(group)) // progress_every:
            progress(done, len(ordered))

    catalog = len({event.item_id for event in ordered if not event.is_forget})
    reports: dict[str, Report] = {}
    for driver in drivers:
        driver.finish()
        driver.scorer.close()
        report = driver.scorer.report
        report.events = len(ordered)
        report.catalog = catalog
        reports[report.name] = report
    return reports


class EmittedFormatError(ValueError):
    """A line of an emitted-lists file that is not a recommendation record."""


def read_emitted(lines: Iterable[bytes]) -> Iterator[EmittedList]:
    """Parse the dataflow's output lines (``Recommendation.to_json()`` records), lazily.

    A record without ``items`` (``{"user_id", "tombstone": true, "as_of"}`` in a file written
    by ``streamrec replay``) or with null ``items`` is a tombstone: the user has no list from
    its ``as_of`` on. A line that is not such a record raises :class:`EmittedFormatError` naming
    its number.
    """
    for number, raw in enumerate(lines, 1):
        try:
            record = orjson.loads(raw)
            items = record.get("items")
            yield EmittedList(
                user_id=str(record["user_id"]),
                items=None if items is None else tuple(str(entry["item_id"]) for entry in items),
                as_of=int(record["as_of"]),
            )
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as error:
            message = f"line {number} is not a recommendation record ({error})"
            raise EmittedFormatError(message) from None
