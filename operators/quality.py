"""Online quality: how good the lists a replica served were, judged by what users did next.

A *target* is an item new to a user that the user's next window brings (the label the ranker
learns from); it is a *hit* when it was in the top ``k`` of the list last served to that user,
at ``rank`` 1..k. Users holding no served list (never served by this replica, or their kept
list dropped or lost in a restart) give no target, so a restart does not read as a fall in
quality. :class:`OnlineQuality` keeps the last ``window`` targets: HR@k is their share of hits
and NDCG@k their mean ``1 / log2(rank + 1)`` (each target on its own, so a target's ideal is
rank 1). Coverage is the share of the catalog among the items of the last ``window`` lists
served. Cost: O(1) per target and O(k) per list.

The offline protocol (``operators.evaluation``) scores every basket, first ones included, per
basket; these live figures follow it closely but are not equal.

>>> quality = OnlineQuality(window=3)
>>> quality.served(["tea", "jam"])
>>> for rank in (1, None, 2, None):
...     quality.score(rank)
>>> quality.targets, quality.hit_rate, round(quality.ndcg, 3)
(4, 0.3333333333333333, 0.21)
>>> quality.coverage(catalog=4)
0.5
"""

from __future__ import annotations

import math
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from operators.jsonl import json_bytes


class OnlineQuality:
    """Rolling HR@k, NDCG@k and coverage over the last ``window`` targets and lists."""

    __slots__ = ("_gain", "_gains", "_hits", "_items", "_lists", "targets")

    def __init__(self, window: int = 1_000) -> None:
        #: (hit, gain) of the last ``window`` targets.
        self._gains: deque[tuple[bool, float]] = deque(maxlen=window)
        self._hits = 0
        self._gain = 0.0
        self._lists: deque[Sequence[str]] = deque(maxlen=window)
        self._items: Counter[str] = Counter()
        #: Targets scored since this replica started.
        self.targets = 0

    def score(self, rank: int | None) -> None:
        """One target: its 1-based rank in the list served before it, or None for a miss."""
        gains = self._gains
        if len(gains) == gains.maxlen:
            hit, gain = gains[0]
            self._hits -= hit
            self._gain -= gain
        gain = 0.0 if rank is None else 1.0 / math.log2(rank + 1)
        gains.append((rank is not None, gain))
        self._hits += rank is not None
        self._gain += gain
        self.targets += 1

    def served(self, items: Sequence[str]) -> None:
        """One list served (its items, best first)."""
        lists, counts = self._lists, self._items
        if len(lists) == lists.maxlen:
            for item in lists[0]:  # a loop of its own: Counter.subtract is three times slower
                left = counts[item] - 1
                if left:
                    counts[item] = left
                else:
                    del counts[item]
        lists.append(items)
        counts.update(items)

    @property
    def window_targets(self) -> int:
        return len(self._gains)

    @property
    def window_hits(self) -> int:
        return self._hits

    @property
    def hit_rate(self) -> float:
        return self._hits / len(self._gains) if self._gains else 0.0

    @property
    def ndcg(self) -> float:
        return self._gain / len(self._gains) if self._gains else 0.0

    @property
    def window_gain(self) -> float:
        return self._gain

    def coverage(self, catalog: int) -> float:
        """Distinct items of the last ``window`` lists / ``catalog`` items."""
        return len(self._items) / catalog if catalog else 0.0


@dataclass(frozen=True, slots=True)
class QualityRecord:
    """One line of the live quality stream: a replica's rolling figures after ``events``
    events (``as_of``: the event time of the last one)."""

    model: str
    as_of: int
    events: int
    window_targets: int
    hit_rate: float
    ndcg: float
    coverage: float
    items: int
    #: The ranker's weight per feature: how online learning has adjusted the prior.
    ranker_weights: dict[str, float]

    def to_json(self, **extra: object) -> bytes:
        """``extra`` fields first (e.g. the replica), then the record's own.

        >>> record = QualityRecord("m", 0, 10, 5, 0.2, 0.1, 0.5, 4, {"trend": 1.0})
        >>> record.to_json(replica="r0")[:40]
        b'{"replica":"r0","model":"m","as_of":0,"e'
        """
        return json_bytes({**extra, **asdict(self)})
