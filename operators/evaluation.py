"""Prequential evaluation: score the lists a recommender hands out against what users do next.

Events are replayed in timestamp order (a stable sort, so ties keep their file order). All events
of one user with one timestamp form a *basket*. Each distinct item of a basket that the user has
not interacted with before is one *target*; it is a hit when it is in the list the user holds
when the basket begins: what the model answers to ``recommend(user, k)`` right then, having
learned every earlier event (a model may define ``catch_up(user, ts)``, called first: the engine
closes the user's finished window there, as the dataflow does when the user's next event
arrives), and, if the model defines ``candidate_items(user)``, the candidates that list was
ranked from. A user's first basket has no list and misses every target. Only then are the basket's
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
* ``candidate_recall``: targets among the candidates of the list they are scored against /
  targets; None for a model without ``candidate_items`` and for emitted lists.
* ``coverage``: distinct items in the lists the baskets were scored against / distinct items in
  the events.
* ``targets``: the number of targets.
* ``hr@k_cold``, ``targets_cold``: HR and targets over the *cold* targets, those of users with
  fewer than :data:`COLD_EVENTS` earlier events (the user's events learned before the basket,
  counted from their last ``forget_user``); a user's first basket is cold.
* ``hr@k_warm``, ``targets_warm``: the same over the other targets.
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
...     def candidate_items(self, user_id):
...         return [i for i in self.counts if i not in self.seen.get(user_id, ())]
...     def recommend(self, user_id, k):
...         return sorted(self.candidate_items(user_id), key=lambda i: -self.counts[i])[:k]
>>> stream = [Event("ann", "tea", 1, "purchase"), Event("ann", "jam", 1, "purchase"),
...           Event("bob", "tea", 2, "purchase"), Event("bob", "jam", 3, "purchase"),
...           Event("bob", "tea", 4, "purchase")]
>>> report = prequential(stream, [Popular()], k=1)["popular"]
>>> for name, value in report.metrics().items():
...     if name != "events_per_s":
...         print(f"{name:<16} {round(value, 3)}")
hr@1             0.25
ndcg@1           0.333
mrr@1            0.25
candidate_recall 0.25
coverage         0.5
targets          4
hr@1_cold        0.25
targets_cold     4
hr@1_warm        0.0
targets_warm     0

Ann's basket (tea and jam at ts 1) and Bob's tea are scored before they have a list: three
misses. After his tea Bob is offered jam, a hit; jam is also his only candidate. His second tea
is no target (already bought). NDCG averages the three baskets: (0 + 0 + 1) / 3. Nobody has
five earlier events, so every target is cold.

By default a returning user's list is asked for when they return, made from all that was
learned until then. A live job cannot do that: it serves a list when the user's window closes,
``window.close_after_idle_s`` after their last event, serves it again while they stay away
(``window.refresh_idle_s``, :func:`~operators.windows.next_refresh`) until their state expires
(``state.user_idle_expire_s``: a tombstone), and the user finds the latest of those lists when
they come back. :class:`LiveTiming` scores models that way, in event time: a user's list is
asked for at the last of those moments before they come back and held until then (a model may
define ``on_idle(user_id)``, called first: the engine serves the user a fresh list there, as
the job's timers do; and ``expire(user_id)``, called at the expiry, when the job writes a
tombstone and the user holds no list: the engine drops the user's state). The evaluator knows
the stream, so it skips the lists a later one replaces before the user is back, and those of
users who never come back: no basket is scored against them, and skipping them keeps ``--live``
about as fast as lists made at the return. In the engine they would change only version numbers,
which kept training lists are pushed out first, and when its batched embedding steps are
applied (a list applies them first): Online Retail's HR@10 0.0312 with every list, 0.0313
skipping them.

Ann comes back at 10 for jam, which Bob and Cyd bought while she was away: asked for at 10, her
list holds it; held from 3, when she had been idle for 2 ms, it is empty;
refreshed 8 ms after her tea, it holds it again:

>>> away = [Event("ann", "tea", 1, "purchase"), Event("bob", "jam", 5, "purchase"),
...         Event("cyd", "jam", 6, "purchase"), Event("ann", "jam", 10, "purchase")]
>>> [prequential(away, [Popular()], k=1, live=timing)["popular"].hits
...  for timing in (None, LiveTiming(2), LiveTiming(2, refresh_ms=8))]
[1, 0, 1]
"""

from __future__ import annotations

import heapq
import math
import time
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from operator import attrgetter
from typing import Protocol

import orjson

from operators.events import Event
from operators.windows import next_refresh

#: Users with fewer earlier events than this are cold (``hr@k_cold``).
COLD_EVENTS = 5


class OnlineRecommender(Protocol):
    """A model that learns one event at a time and hands out top-``k`` lists of item ids.

    Optional, found by name: ``catch_up(user_id, ts)``, called before each list asked for at a
    basket; ``on_idle(user_id)`` and ``expire(user_id)`` under a :class:`LiveTiming` (see the
    module docstring); ``candidate_items(user_id) -> list[str]``, the items the user's current
    list was ranked from (for ``candidate_recall``).
    """

    name: str

    def learn(self, event: Event) -> None: ...

    def recommend(self, user_id: str, k: int) -> list[str]: ...


@dataclass(frozen=True, slots=True)
class LiveTiming:
    """When a live job serves an idle user's list, in event-time milliseconds after their last
    event (the job's processing-time timers, see ``dataflows.steps.Timers``)."""

    #: The user's open window closes: the first list of their absence.
    close_after_idle_ms: int
    #: The first span of the refreshes (:func:`~operators.windows.next_refresh`; None: none).
    refresh_ms: int | None = None
    #: The user's state expires: their list is dropped (None: never).
    expire_ms: int | None = None

    def after(self, idle_ms: int) -> int | None:
        """When the next list is due after one served ``idle_ms`` after the user's last event
        (None: no more); the expiry, if due first, is one of those moments."""
        if self.expire_ms is not None and idle_ms >= self.expire_ms:
            return None
        due = None if self.refresh_ms is None else next_refresh(idle_ms, self.refresh_ms)
        if self.expire_ms is not None:
            due = self.expire_ms if due is None else min(due, self.expire_ms)
        return due

    def latest(self, idle_ms: int) -> int:
        """The last moment a list was due by ``idle_ms`` after the user's last event (the
        window's close, if it is not due yet).

        >>> LiveTiming(1, refresh_ms=10, expire_ms=100).latest(50)
        40
        """
        moment = self.close_after_idle_ms
        while (following := self.after(moment)) is not None and following <= idle_ms:
            moment = following
        return moment


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
    cold_targets: int = 0
    cold_hits: int = 0
    #: Targets among the candidates; None for a model that exposes no candidates.
    candidate_hits: int | None = None
    #: ``(ts, hit rate of the last window targets)`` points.
    curve: list[tuple[int, float]] = field(default_factory=list)

    @property
    def hr(self) -> float:
        return _share(self.hits, self.targets)

    @property
    def mrr(self) -> float:
        return _share(self.reciprocal_ranks, self.targets)

    @property
    def ndcg(self) -> float:
        return _share(self.ndcg_sum, self.baskets)

    @property
    def coverage(self) -> float:
        return _share(len(self.recommended), self.catalog)

    @property
    def candidate_recall(self) -> float | None:
        return None if self.candidate_hits is None else _share(self.candidate_hits, self.targets)

    @property
    def warm_targets(self) -> int:
        return self.targets - self.cold_targets

    @property
    def hr_cold(self) -> float:
        return _share(self.cold_hits, self.cold_targets)

    @property
    def hr_warm(self) -> float:
        return _share(self.hits - self.cold_hits, self.warm_targets)

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
            "candidate_recall": self.candidate_recall,
            "coverage": self.coverage,
            "targets": self.targets,
            f"hr@{self.k}_cold": self.hr_cold,
            "targets_cold": self.cold_targets,
            f"hr@{self.k}_warm": self.hr_warm,
            "targets_warm": self.warm_targets,
            "events_per_s": self.events_per_s,
        }


def _share(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


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

    def score(
        self,
        ts: int,
        targets: Sequence[str],
        ranked: Sequence[str] | None,
        candidates: Collection[str],
        cold: bool,
    ) -> None:
        report = self.report
        ranks = {item: rank for rank, item in enumerate(ranked[: report.k] if ranked else (), 1)}
        dcg = 0.0
        window = self._window
        if cold:
            report.cold_targets += len(targets)
        if report.candidate_hits is not None:
            report.candidate_hits += sum(target in candidates for target in targets)
        for target in targets:
            rank = ranks.get(target)
            if rank is not None:
                report.hits += 1
                report.cold_hits += cold
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


#: (user, moment, the user's state expires then): a list a live job serves an idle user.
Due = tuple[str, int, bool]


class _IdleSchedule:
    """When a live job serves idle users' lists (:class:`LiveTiming`), the same for every model:
    only the moments whose list a basket is scored against (see the module docstring)."""

    def __init__(self, live: LiveTiming, ordered: Sequence[Event]) -> None:
        self._live = live
        #: Each user's events still to come (their times).
        self._upcoming: dict[str, deque[int]] = {}
        for event in ordered:
            self._upcoming.setdefault(event.user_id, deque()).append(event.ts)
        #: Each idle user's last event time, next due moment and the moment of their entry in
        #: the heap of (moment, user), at or before the due one (moved on when popped early).
        #: Entries of other moments are outdated (the user came back before one was due) and
        #: skipped, so the heap holds about one entry per user, not per event.
        self._idle: dict[str, tuple[int, int, int]] = {}
        self._heap: list[tuple[int, str]] = []

    def resume(self, idle_since: Mapping[str, int], start: int) -> None:
        """Users idle since before the stream (a warm start) hold the list the job served them
        last before ``start`` (made at ``start``: the model has not changed since)."""
        for user_id, last in idle_since.items():
            if user_id in self._upcoming:
                self._queue(user_id, last, last + self._live.latest(start - last))

    def due(self, ts: int) -> list[Due]:
        """The lists due before ``ts`` that a basket will be scored against, in time order."""
        live, found = self._live, []
        while self._heap and self._heap[0][0] < ts:
            queued, user_id = heapq.heappop(self._heap)
            idle_user = self._idle.get(user_id)
            if idle_user is None or idle_user[2] != queued:
                continue
            last, moment, _ = idle_user
            if moment > queued:
                self._queue(user_id, last, moment)
                continue
            upcoming = self._upcoming.get(user_id)
            if not upcoming:
                # The user never comes back: nothing they hold is ever scored.
                del self._idle[user_id]
                continue
            idle = moment - last
            following = live.after(idle)
            if idle == live.expire_ms:
                found.append((user_id, moment, True))
            elif following is None or last + following >= upcoming[0]:
                found.append((user_id, moment, False))
            # Otherwise a later list replaces this one before the user is back: it is skipped.
            if following is None:
                del self._idle[user_id]
            else:
                self._queue(user_id, last, last + following)
        return found

    def learn(self, event: Event) -> None:
        """The user is active: their next list is due when their window closes."""
        user_id = event.user_id
        self._upcoming[user_id].popleft()
        moment = event.ts + self._live.close_after_idle_ms
        idle_user = self._idle.get(user_id)
        if idle_user is None or moment < idle_user[2]:
            self._queue(user_id, event.ts, moment)
        else:
            self._idle[user_id] = (event.ts, moment, idle_user[2])

    def _queue(self, user_id: str, last: int, moment: int) -> None:
        self._idle[user_id] = (last, moment, moment)
        heapq.heappush(self._heap, (moment, user_id))


class _Live:
    """Drives one model: times its calls and asks it for a list at each returning user's basket
    (or, with a :class:`LiveTiming`, at the moments a live job serves an idle user's list; see
    the module docstring).

    Its candidates are asked for after the list and left out of its time: only the evaluation
    needs them.
    """

    def __init__(self, model: OnlineRecommender, scorer: _Scorer) -> None:
        self.model = model
        self.scorer = scorer
        self._k = scorer.report.k
        self._seconds = 0.0
        self._catch_up: Callable[[str, int], None] | None = getattr(model, "catch_up", None)
        self._candidates: Callable[[str], list[str]] | None = getattr(
            model, "candidate_items", None
        )
        if self._candidates is not None:
            scorer.report.candidate_hits = 0
        self._on_idle: Callable[[str], None] | None = getattr(model, "on_idle", None)
        self._expire: Callable[[str], None] | None = getattr(model, "expire", None)
        #: The lists of idle users, held since the moment they were served, with candidates.
        self._held: dict[str, tuple[list[str], Collection[str]]] = {}

    def advance(self, ts: int, due: list[Due]) -> None:
        """Serve and hold the lists of the idle users ``due`` before ``ts``."""
        for user_id, moment, expires in due:
            if expires:
                # The job writes a tombstone: whatever the model, the user holds no list.
                if self._expire is not None:
                    self._expire(user_id)
                self._held[user_id] = ([], ())
            else:
                self._held[user_id] = self._list(user_id, moment, idle=True)

    def list_for(
        self, user_id: str, ts: int, returning: bool
    ) -> tuple[list[str] | None, Collection[str]]:
        """The user's list and its candidates (none before the user's first basket)."""
        if not returning:
            return None, ()
        held = self._held.get(user_id)
        ranked, candidates = self._list(user_id, ts) if held is None else held
        self.scorer.handed_out(ranked)
        return ranked, candidates

    def _list(self, user_id: str, ts: int, idle: bool = False) -> tuple[list[str], Collection[str]]:
        started = time.perf_counter()
        if idle and self._on_idle is not None:
            self._on_idle(user_id)
        elif self._catch_up is not None:
            self._catch_up(user_id, ts)
        ranked = self.model.recommend(user_id, self._k)
        self._seconds += time.perf_counter() - started
        candidates = () if self._candidates is None else set(self._candidates(user_id))
        return ranked, candidates

    def learn(self, event: Event) -> None:
        if self._held:
            self._held.pop(event.user_id, None)
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

    def advance(self, ts: int, due: list[Due]) -> None:
        """Take the lists emitted before ``ts`` (``due`` concerns live models only)."""
        while self._next is not None and self._next.as_of < ts:
            self._lists[self._next.user_id] = self._next
            self._next = next(self._pending, None)

    def list_for(
        self, user_id: str, ts: int, returning: bool
    ) -> tuple[tuple[str, ...] | None, Collection[str]]:
        """The user's latest list; emitted records carry no candidates."""
        held = self._lists.get(user_id)
        if held is None or held.items is None:
            return None, ()
        # Coverage counts the lists a basket met, as a live model is asked for them.
        self.scorer.handed_out(held.items)
        return held.items, ()

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
    known: Mapping[str, Collection[str]] | None = None,
    live: LiveTiming | None = None,
    idle_since: Mapping[str, int] | None = None,
) -> dict[str, Report]:
    """Score every model (and the ``emitted`` lists, if given) in one pass; reports by name.

    ``progress(done, total)`` is called about every ``progress_every`` events. ``known`` holds
    the items each user interacted with before ``events`` (a warm start's history): they are no
    targets, and such a user's first basket is scored (a warm model has a list for it).
    ``live``: score the lists a live job holds for idle users (see the module docstring);
    emitted lists are scored as they were emitted. ``idle_since``: with ``live``, the last event
    time of users idle since before ``events`` (a warm start's users).
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    curve = curve or Curve()
    ordered = sorted(events, key=attrgetter("ts"))
    schedule = None if live is None else _IdleSchedule(live, ordered)
    if schedule is not None and idle_since and ordered:
        schedule.resume(idle_since, ordered[0].ts)
    drivers: list[_Live | _Emitted] = []
    for model in models:
        if any(driver.scorer.report.name == model.name for driver in drivers):
            raise ValueError(f"two models are named {model.name!r}")
        drivers.append(_Live(model, _Scorer(Report(model.name, k), curve)))
    if emitted is not None:
        drivers.append(_Emitted(emitted, _Scorer(Report(emitted_name, k), curve)))

    seen: dict[str, set[str]] = {user: set(items) for user, items in (known or {}).items()}
    history: dict[str, int] = {user: len(items) for user, items in seen.items()}
    done = 0
    for ts, same_time in groupby(ordered, key=attrgetter("ts")):
        group = list(same_time)
        # Each user's distinct items at this ts (a dict keeps their order).
        baskets: dict[str, dict[str, None]] = {}
        for event in group:
            items = baskets.setdefault(event.user_id, {})
            if event.item_id is not None:
                items[event.item_id] = None
        due = [] if schedule is None else schedule.due(ts)
        for driver in drivers:
            driver.advance(ts, due)
        for event in group:
            user = event.user_id
            basket = baskets.pop(user, None)
            if basket is not None:
                known = seen.get(user)
                targets = [item for item in basket if known is None or item not in known]
                if targets:
                    cold = history.get(user, 0) < COLD_EVENTS
                    for driver in drivers:
                        ranked, candidates = driver.list_for(user, ts, returning=known is not None)
                        driver.scorer.score(ts, targets, ranked, candidates, cold)
            if event.is_forget:
                seen.pop(user, None)
                history.pop(user, None)
            else:
                seen.setdefault(user, set()).add(event.item_id)
                history[user] = history.get(user, 0) + 1
            for driver in drivers:
                driver.learn(event)
            if schedule is not None:
                schedule.learn(event)
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
