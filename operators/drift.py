"""Drift adaptation: River's ADWIN watches a rank shard's hits and shortens the recency half-life.

Every training request tells whether its positives were in the top ``k`` of the list built
before the window (a hit). When ADWIN detects that the hit rate *dropped*, the users' old
history is evidently less predictive than it was, so the monitor's :attr:`factor` (multiplied
into the features' recency half-life) falls to ``drift_shrink`` and then relaxes linearly back
to 1 over ``drift_relax`` requests. With ``drift_adaptation=False`` the factor stays 1.

>>> monitor = DriftMonitor(EngineConfig(drift_shrink=0.5, drift_relax=4))
>>> for hit in [True] * 300 + [False] * 300:
...     monitor.update(hit)
...     if monitor.drifts:
...         break
>>> monitor.factor
0.5
>>> for _ in range(4):
...     monitor.update(False)
>>> monitor.factor
1.0
"""

from __future__ import annotations

import pickle

from river.drift import ADWIN

from operators.engine_config import EngineConfig


class DriftMonitor:
    """ADWIN over one shard's hit stream and the recency factor it sets."""

    __slots__ = ("adaptive", "detector", "drifts", "factor", "relax", "shrink")

    def __init__(self, config: EngineConfig) -> None:
        self.detector = ADWIN(delta=config.drift_delta)
        self.adaptive = config.drift_adaptation
        self.shrink = config.drift_shrink
        self.relax = config.drift_relax
        self.factor = 1.0
        self.drifts = 0

    def update(self, hit: bool) -> None:
        """Feed one request's outcome; on a detected drop in hits, shorten the half-life."""
        before = self.detector.estimation
        self.detector.update(1.0 if hit else 0.0)
        if self.adaptive and self.factor < 1.0:
            self.factor = min(1.0, self.factor + (1.0 - self.shrink) / self.relax)
        if self.detector.drift_detected and self.detector.estimation < before:
            self.drifts += 1
            if self.adaptive:
                self.factor = self.shrink

    def snapshot(self) -> tuple[bytes, float, int]:
        return pickle.dumps(self.detector), self.factor, self.drifts

    @classmethod
    def restore(cls, snapshot: tuple[bytes, float, int], config: EngineConfig) -> DriftMonitor:
        monitor = cls(config)
        detector, monitor.factor, monitor.drifts = snapshot
        monitor.detector = pickle.loads(detector)
        return monitor
