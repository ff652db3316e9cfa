"""The rank step: gather one request's replies, learn test-then-train, serve the user's list.

Keyed by the rank shard (``rank_shard(user_id, shards)``). Its long-lived state is one
:class:`Ranker` (linear weights over :data:`~operators.features.FEATURES`); requests waiting
for their replies are transient.

For a complete request the step builds the candidates once. A request that trains (it carries
the event's new item as a label) builds the *training* list from the history rows before the
event and takes one step of the ranker's listwise loss with the label as the positive; a
request that serves (it carries a version) then builds the *served* list from all rows and
returns its top ``k``. Replies come from the items' state before the event, so the training
list is the list the user's history gave just before the event judged it.

>>> from operators.messages import RankHeader, RankPart, TREND_KEY
>>> config = EngineConfig(k=2)
>>> state = RankState(config)
>>> header = RankHeader(("u1", 2), 0, 10, (("a", 5, 5.0, None), ("b", 10, 5.0, None)),
...                     before=1, labels=("b",), seen=frozenset({"a", "b"}), parts=3, version=2)
>>> state.on_message(RankPart(("u1", 2), 0, "a", ("b", "c"), (3.0, 1.0)), config)
>>> state.on_message(RankPart(("u1", 2), 0, TREND_KEY, ("d",), (1.0,), long_weights=(1.0,)), config)
>>> state.on_message(header, config)
>>> recommendation = state.on_message(RankPart(("u1", 2), 0, "b", ("c", "e"), (4.0, 1.0)), config)
>>> [item for item, _ in recommendation.items], recommendation.version
(['c', 'd'], 2)
>>> bool(state.ranker.weights[0] > FIXED_WEIGHTS["co_sum"])  # "b": a positive with a high co_sum
True
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field

import numpy as np
from river import optim

from operators.candidates import Candidates, gather_candidates
from operators.engine_config import EngineConfig
from operators.features import FEATURES, FIXED_WEIGHTS, feature_matrix
from operators.messages import (
    ForgetUser,
    RankHeader,
    RankPart,
    Recommendation,
    RequestId,
    Tombstone,
)

RankMessage = RankHeader | RankPart | ForgetUser


class Ranker:
    """Linear scores ``X @ weights``; the "river" kind learns the weights online.

    Learning minimises the softmax cross-entropy of the positive over its list (the
    probability the scores give the positive among all candidates), a listwise loss whose
    gradient ``softmax(X @ w) @ X - x_positive`` a River optimiser applies to the weights. Unlike
    pairs with hard negatives it is calibrated: a positive drawn at random among equally good
    candidates leaves their weights alone instead of pushing them down.
    """

    __slots__ = ("optimizer", "weights")

    def __init__(self, config: EngineConfig) -> None:
        self.weights = np.array([FIXED_WEIGHTS[name] for name in FEATURES])
        self.optimizer: optim.base.Optimizer | None = None
        if config.ranker == "river":
            self.optimizer = optim.SGD(config.learning_rate)

    def learn_list(self, features: np.ndarray, positives: np.ndarray) -> None:
        """One step on the list ``features`` (candidates, features) whose rows ``positives``
        were chosen."""
        if self.optimizer is None:
            return
        scores = features @ self.weights
        chances = np.exp(scores - scores.max())
        chances /= chances.sum()
        gradient = chances @ features - features[positives].mean(axis=0)
        weights = dict(zip(FEATURES, self.weights.tolist(), strict=True))
        self.optimizer.step(weights, dict(zip(FEATURES, gradient.tolist(), strict=True)))
        self.weights = np.array([weights[name] for name in FEATURES])

    def snapshot(self) -> tuple[list[float], bytes | None]:
        optimizer = None if self.optimizer is None else pickle.dumps(self.optimizer)
        return self.weights.tolist(), optimizer

    @classmethod
    def restore(cls, snapshot: tuple[list[float], bytes | None], config: EngineConfig) -> Ranker:
        ranker = cls(config)
        weights, optimizer = snapshot
        ranker.weights = np.array(weights)
        ranker.optimizer = None if optimizer is None else pickle.loads(optimizer)
        return ranker


@dataclass(slots=True)
class _Pending:
    header: RankHeader | None = None
    parts: list[RankPart] = field(default_factory=list)


@dataclass(slots=True)
class Ranked:
    """A served list and the candidates it was chosen from."""

    recommendation: Recommendation
    candidates: Candidates

    def candidate_items(self) -> list[str]:
        """The candidates that could be served (the window's own items left out)."""
        items = self.candidates.items
        return [items[index] for index in np.flatnonzero(~self.candidates.labels)]


class RankState:
    """One rank shard: the ranker and the requests being gathered."""

    __slots__ = ("pending", "ranker")

    def __init__(self, config: EngineConfig) -> None:
        self.ranker = Ranker(config)
        self.pending: dict[RequestId, _Pending] = {}

    def is_idle(self) -> bool:
        """True when no request is waiting for replies."""
        return not self.pending

    def on_message(
        self, message: RankMessage, config: EngineConfig
    ) -> Recommendation | Tombstone | None:
        """Gather; when a request is complete, rank it (learning first)."""
        if isinstance(message, ForgetUser):
            for request in [request for request in self.pending if request[0] == message.user_id]:
                del self.pending[request]
            return Tombstone(message.user_id, message.as_of)
        pending = self.pending.setdefault(message.request, _Pending())
        if isinstance(message, RankHeader):
            pending.header = message
        else:
            pending.parts.append(message)
        header = pending.header
        if header is None or len(pending.parts) < header.parts:
            return None
        del self.pending[message.request]
        ranked = self.rank(header, pending.parts, config)
        return None if ranked is None else ranked.recommendation

    def rank(
        self, header: RankHeader, parts: list[RankPart], config: EngineConfig, learn: bool = True
    ) -> Ranked | None:
        """Test-then-train on one complete request (``learn=False``: no training); the served
        list when the request asks for one."""
        candidates = gather_candidates(header, parts, config)
        half_life = config.recency_half_life_ms
        # Without history before the basket the training list is the trending items alone,
        # which says nothing about how to weigh co-occurrence against popularity.
        if learn and header.labels and header.before:
            training = feature_matrix(header, candidates, header.before, half_life)
            self._learn(header, candidates, training, config)
        if header.version is None:
            return None
        served = feature_matrix(header, candidates, len(header.history), half_life)
        scores = served @ self.ranker.weights
        scores[candidates.labels] = -np.inf
        eligible = len(scores) - int(candidates.labels.sum())
        top = _top(scores, min(config.k, eligible))
        items = [(candidates.items[index], round(float(scores[index]), 6)) for index in top]
        user_id = header.request[0]
        recommendation = Recommendation(
            user_id, items, header.as_of, header.version, config.model_name
        )
        return Ranked(recommendation, candidates)

    def _learn(
        self, header: RankHeader, candidates: Candidates, training: np.ndarray, config: EngineConfig
    ) -> None:
        # Only candidates the history before the basket (or the trend) proposes: what the list
        # served before the window could have held.
        reachable = candidates.links[: header.before].any(axis=0) | (candidates.trend_rank > 0)
        positives = np.flatnonzero(reachable & candidates.labels)
        if not positives.size:
            return
        listed = np.flatnonzero(reachable)
        training = training[listed]
        chosen = np.flatnonzero(candidates.labels[listed])
        self.ranker.learn_list(training, chosen)

    def snapshot(self) -> dict[str, object]:
        return {
            "ranker": self.ranker.snapshot(),
            "pending": [
                (request, pending.header, list(pending.parts))
                for request, pending in self.pending.items()
            ],
        }

    @classmethod
    def restore(cls, snapshot: dict[str, object], config: EngineConfig) -> RankState:
        state = cls(config)
        state.ranker = Ranker.restore(snapshot["ranker"], config)  # type: ignore[arg-type]
        for request, header, parts in snapshot["pending"]:  # type: ignore[attr-defined]
            state.pending[request] = _Pending(header, list(parts))
        return state


def _top(scores: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` best scores, best first (ties by index: deterministic)."""
    if count <= 0:
        return np.empty(0, dtype=np.intp)
    if count < len(scores):
        chosen = np.argpartition(-scores, count - 1)[:count]
        chosen.sort()
    else:
        chosen = np.arange(len(scores))
    return chosen[np.argsort(-scores[chosen], kind="stable")]
