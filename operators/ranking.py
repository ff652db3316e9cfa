"""The ranker: a linear model over standardised features, learned online with a River optimiser.

Scores are ``((X - mean) / scale) @ weights``. The means and scales are running statistics of
every candidate the ranker has trained on (so each weight moves at the same pace whatever its
feature's units), and the weights start from :data:`~operators.features.FIXED_WEIGHTS`.

Learning minimises the softmax cross-entropy of the chosen item over its list: the probability
the scores give the item the user picked next among all candidates of the list they held. Its
gradient ``softmax(Z @ w) @ Z - z_chosen`` is applied by a River optimiser (AdaGrad: per-weight
steps that shrink as evidence accumulates, so the blend settles on a stream yet still follows a
change). The ``"fixed"`` kind keeps the prior.

>>> config = EngineConfig()
>>> ranker = Ranker(config)
>>> rng = np.random.default_rng(0)
>>> lists = [rng.normal(size=(20, len(FEATURES))) for _ in range(300)]
>>> signal = FEATURES.index("spread")  # the user always picks the item with the most spread
>>> for features in lists:
...     ranker.learn(features, int(features[:, signal].argmax()))
>>> hits = sum(int(ranker.scores(f).argmax() == f[:, signal].argmax()) for f in lists[:50])
>>> hits > 40
True
"""

from __future__ import annotations

import pickle

import numpy as np
from river import optim

from operators.engine_config import EngineConfig
from operators.features import FEATURES, FIXED_WEIGHTS

RankerSnapshot = tuple[list[float], list[float], list[float], float, bytes | None]


class Ranker:
    """Linear scores over standardised features; ``learn`` takes one listwise step."""

    __slots__ = ("_squares", "_sums", "count", "optimizer", "weights")

    def __init__(self, config: EngineConfig) -> None:
        self.weights = np.array([FIXED_WEIGHTS[name] for name in FEATURES])
        self.count = 0.0
        self._sums = np.zeros(len(FEATURES))
        self._squares = np.zeros(len(FEATURES))
        self.optimizer: optim.base.Optimizer | None = None
        if config.ranker == "river":
            self.optimizer = optim.AdaGrad(config.learning_rate)

    @property
    def mean(self) -> np.ndarray:
        return self._sums / max(self.count, 1.0)

    @property
    def scale(self) -> np.ndarray:
        if self.count < 2:
            return np.ones(len(FEATURES))
        variance = self._squares / self.count - self.mean**2
        return np.sqrt(np.maximum(variance, 1e-12))

    def standardised(self, features: np.ndarray) -> np.ndarray:
        return (features - self.mean) / self.scale

    def scores(self, features: np.ndarray) -> np.ndarray:
        return self.standardised(features) @ self.weights

    def learn(self, features: np.ndarray, chosen: int) -> None:
        """One step on the list ``features`` (candidates, features) whose row ``chosen`` the
        user picked; also updates the running statistics."""
        self.count += len(features)
        self._sums += features.sum(axis=0)
        self._squares += np.square(features).sum(axis=0)
        if self.optimizer is None:
            return
        standardised = self.standardised(features)
        scores = standardised @ self.weights
        chances = np.exp(scores - scores.max())
        chances /= chances.sum()
        gradient = chances @ standardised - standardised[chosen]
        weights = dict(zip(FEATURES, self.weights.tolist(), strict=True))
        self.optimizer.step(weights, dict(zip(FEATURES, gradient.tolist(), strict=True)))
        self.weights = np.fromiter(map(weights.__getitem__, FEATURES), float, len(FEATURES))

    def snapshot(self) -> RankerSnapshot:
        optimizer = None if self.optimizer is None else pickle.dumps(self.optimizer)
        return (
            self.weights.tolist(),
            self._sums.tolist(),
            self._squares.tolist(),
            self.count,
            optimizer,
        )

    @classmethod
    def restore(cls, snapshot: RankerSnapshot, config: EngineConfig) -> Ranker:
        ranker = cls(config)
        weights, sums, squares, count, optimizer = snapshot
        ranker.weights = np.array(weights)
        ranker._sums = np.array(sums)
        ranker._squares = np.array(squares)
        ranker.count = count
        if optimizer is not None and ranker.optimizer is not None:
            ranker.optimizer = pickle.loads(optimizer)
        return ranker
