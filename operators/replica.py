"""A model replica: the item knowledge and the ranker, serving the lists of its users.

Every replica learns every :class:`~operators.item_model.Observation` (reading item knowledge is
far hotter than writing it: a list reads dozens of items, an event writes a few), and serves
the users routed to it. Learning is test-then-train on the list the user was served: a
:class:`Serve` ranks the candidates of the whole history and keeps that list (candidates and
features); when the user's next event opens a window (:class:`Train`) the ranker learns from
its item on the kept list, and only then does the event's observation reach the item model.
Later new items of the same window (:class:`Label`) train on the same list, so the ranker learns
from every target without ever seeing the window's own links. A user with no kept list (never
served here, or dropped) gets one built from the history before the event.

Kept lists are transient: at most ``open_lists`` (the least recently kept dropped first), and
not part of the snapshot, which stays the size of the item model however many users there are.
The price: after a restart a user's first window trains on a list built again, so lists
repeated after a crash keep their (user, version) but their scores may differ slightly.

>>> from operators.item_model import Observation
>>> from operators.messages import Serve, Train
>>> replica = ModelReplica(EngineConfig(dimensions=4, k=2))
>>> for user, item, ts in [("ann", "tea", 0), ("ann", "jam", 1), ("bob", "tea", 2)]:
...     replica.on_message(Observation(item, ts, 1.0, True, ()))
>>> replica.on_message(Observation("jam", 3, 1.0, True, (("tea", 0, 1.0),)))
>>> served = replica.on_message(Serve("bob", (("tea", 2, 1.0),), ("tea",), 1, 2))
>>> [(item, because) for item, _, because in served.items]
[('jam', 'tea')]
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from operators.candidates import Candidates, gather
from operators.engine_config import EngineConfig
from operators.features import COVISITATION, FEATURES, POPULARITY, feature_matrix
from operators.item_model import ItemModel, ItemModelSnapshot, Observation
from operators.messages import (
    Label,
    Recommendation,
    ReplicaMessage,
    Serve,
    Tombstone,
    Train,
)
from operators.ranking import Ranker, RankerSnapshot

_COVISITATION = np.array([name in COVISITATION for name in FEATURES])
_POPULARITY = np.array([name in POPULARITY for name in FEATURES])
_SIMILARITY = np.array([name == "similarity" for name in FEATURES])

ReplicaSnapshot = tuple[ItemModelSnapshot, RankerSnapshot]


@dataclass(slots=True)
class _TrainingList:
    """A kept list, compact (about 6 KB for 300 candidates): the features are only a training
    signal, and half precision holds them to three digits."""

    rows: np.ndarray
    features: np.ndarray


class ModelReplica:
    """The item model and the ranker of one replica, plus its users' open training lists."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.items = ItemModel(config)
        self.ranker = Ranker(config)
        self.open: dict[str, _TrainingList] = {}
        #: False stops all learning (evaluation of a frozen model): lists are still served.
        self.learning = True

    def on_message(self, message: ReplicaMessage) -> Recommendation | Tombstone | None:
        if isinstance(message, Observation):
            if self.learning:
                self.items.observe(message)
        elif isinstance(message, Train):
            self._open(message)
        elif isinstance(message, Label):
            self._learn(message.user_id, message.item_id)
        elif isinstance(message, Serve):
            return self.serve(message)[0]
        else:
            self.open.pop(message.user_id, None)
            return Tombstone(message.user_id, message.as_of)
        return None

    def _open(self, message: Train) -> None:
        if not self.learning:
            return
        user_id = message.user_id
        if user_id not in self.open and message.history:
            candidates = gather(self.items, message.history, message.seen, self.config)
            features = feature_matrix(self.items, candidates, self.config)
            self.keep(user_id, candidates.rows, features)
        if message.label is not None:
            self._learn(user_id, message.label)

    def keep(self, user_id: str, rows: np.ndarray, features: np.ndarray) -> None:
        """Keep the user's list to train on (the least recently kept go first)."""
        self.open.pop(user_id, None)
        self.open[user_id] = _TrainingList(rows.astype(np.int32), features.astype(np.float16))
        if len(self.open) > self.config.open_lists:
            del self.open[next(iter(self.open))]

    def _learn(self, user_id: str, item_id: str) -> None:
        training = self.open.get(user_id)
        row = self.items.rows.get(item_id)
        if training is None or row is None or len(training.rows) < 2:
            return
        column = int(np.searchsorted(training.rows, row))
        if column < len(training.rows) and training.rows[column] == row:
            self.ranker.learn(training.features.astype(np.float64), column)

    def serve(self, message: Serve) -> tuple[Recommendation, Candidates]:
        """The user's list (and the candidates it was chosen from), kept to train on when the
        user is back."""
        config = self.config
        candidates = gather(self.items, message.history, message.seen, config)
        features = feature_matrix(self.items, candidates, config)
        if self.learning:
            self.keep(message.user_id, candidates.rows, features)
        standardised = self.ranker.standardised(features)
        scores = standardised @ self.ranker.weights
        count = min(config.k, len(scores))
        top = (
            np.argpartition(-scores, count - 1)[:count] if count < len(scores) else np.arange(count)
        )
        top = top[np.lexsort((candidates.rows[top], -scores[top]))]
        ids = self.items.ids
        reasons = self._because(candidates, standardised[top], top)
        items = [
            (ids[candidates.rows[column]], round(float(scores[column]), 6), reason)
            for column, reason in zip(top.tolist(), reasons, strict=True)
        ]
        recommendation = Recommendation(
            message.user_id, items, message.as_of, message.version, config.model_name
        )
        return recommendation, candidates  # type: ignore[return-value]

    def _because(
        self, candidates: Candidates, standardised: np.ndarray, columns: np.ndarray
    ) -> list[str]:
        """Per listed item, what contributed most to its score (see :data:`~messages.Item`)."""
        contributions = standardised * self.ranker.weights
        groups = np.stack(
            (
                contributions[:, _COVISITATION].sum(axis=1),
                contributions[:, _SIMILARITY].sum(axis=1),
                contributions[:, _POPULARITY].sum(axis=1),
            )
        )
        winner = groups.argmax(axis=0)
        linked = candidates.links[:, columns] * candidates.recency[:, None]
        strongest = linked.argmax(axis=0) if len(candidates.history) else columns * 0
        has_link = linked.max(axis=0) > 0 if len(candidates.history) else columns < 0
        ids = self.items.ids
        reasons = []
        for group, source, linked_any in zip(
            winner.tolist(), strongest.tolist(), has_link.tolist(), strict=True
        ):
            if group == 0 and linked_any:
                reasons.append(ids[candidates.history[source]])
            elif group == 1:
                reasons.append("similar")
            else:
                reasons.append("trending")
        return reasons  # type: ignore[return-value]

    def snapshot(self) -> ReplicaSnapshot:
        return self.items.snapshot(), self.ranker.snapshot()

    @classmethod
    def restore(cls, snapshot: ReplicaSnapshot, config: EngineConfig) -> ModelReplica:
        replica = cls(config)
        items, ranker = snapshot
        replica.items = ItemModel.restore(items, config)
        replica.ranker = Ranker.restore(ranker, config)
        return replica
