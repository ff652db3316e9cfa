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

The same moment scores what was served (:mod:`operators.quality`): a target of a user whose
kept list was served is a hit when it is in that list's top ``k``, so :attr:`ModelReplica.quality`
is the rolling hit rate of the lists this replica handed out, at no more cost than a look-up in
``k`` rows.

Kept lists are transient: at most ``open_lists`` (the least recently kept dropped first, and a
user's at once when the user is forgotten or expires, :class:`~operators.messages.ForgetUser`), and
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
>>> replica.on_message(Train("bob", (("tea", 2, 1.0),), ("tea",), "jam"))
>>> replica.quality.targets, replica.quality.hit_rate
(1, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from operators.candidates import Candidates, gather
from operators.engine_config import EngineConfig
from operators.features import (
    CATEGORY,
    COVISITATION,
    FEATURES,
    POPULARITY,
    SIMILARITY,
    feature_matrix,
)
from operators.item_model import ItemModel, ItemModelSnapshot, Observation
from operators.messages import (
    Label,
    ObservationBlock,
    Recommendation,
    ReplicaMessage,
    Serve,
    Tombstone,
    Train,
)
from operators.quality import OnlineQuality, QualityRecord
from operators.ranking import Ranker, RankerSnapshot
from operators.topk import best

#: (features, groups): which feature belongs to which group of signals, in the order of
#: :meth:`ModelReplica._because`'s reasons.
_GROUPS = np.array(
    [
        [name in group for group in (COVISITATION, SIMILARITY, POPULARITY, CATEGORY)]
        for name in FEATURES
    ],
    float,
)

#: What :func:`_reasons`' group codes say; 0 is a history item (its id).
_REASONS = (None, "similar", "trending", "category")

ReplicaSnapshot = tuple[ItemModelSnapshot, RankerSnapshot]


@dataclass(slots=True)
class _TrainingList:
    """A kept list, compact (about 6 KB for 300 candidates): the features are only a training
    signal, and half precision holds them to three digits."""

    rows: np.ndarray
    features: np.ndarray
    #: The rows of the list served from these candidates, best first; None for a list built
    #: only to train on (never served, so it scores no target).
    top: tuple[int, ...] | None = None


class ModelReplica:
    """The item model and the ranker of one replica, plus its users' open training lists."""

    def __init__(self, config: EngineConfig, quality_window: int = 1_000) -> None:
        self.config = config
        self.items = ItemModel(config)
        self.ranker = Ranker(config)
        self.open: dict[str, _TrainingList] = {}
        #: The lists served here, scored against their users' next targets (not snapshotted).
        self.quality = OnlineQuality(quality_window)
        #: False stops all learning (evaluation of a frozen model): lists are still served.
        self.learning = True

    def on_message(self, message: ReplicaMessage) -> Recommendation | Tombstone | None:
        if isinstance(message, Observation):
            if self.learning:
                self.items.observe(message)
        elif isinstance(message, ObservationBlock):
            if self.learning:
                for observation in message:
                    self.items.observe(observation)
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

    def keep(
        self,
        user_id: str,
        rows: np.ndarray,
        features: np.ndarray,
        top: tuple[int, ...] | None = None,
    ) -> None:
        """Keep the user's list to train on (the least recently kept go first); ``top``: the
        rows served from it, best first."""
        self.open.pop(user_id, None)
        half = _half_bits(np.ascontiguousarray(features, np.float64)).view(np.float16)
        kept = _TrainingList(rows.astype(np.int32), half, top)
        self.open[user_id] = kept
        if len(self.open) > self.config.open_lists:
            del self.open[next(iter(self.open))]

    def _score(self, training: _TrainingList | None, item_id: str) -> None:
        """Count a target against the list served to its user, if one was."""
        if training is None or training.top is None:
            return
        row = self.items.rows.get(item_id)
        top = training.top
        self.quality.score(top.index(row) + 1 if row in top else None)

    def _learn(self, user_id: str, item_id: str) -> None:
        training = self.open.get(user_id)
        self._score(training, item_id)
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
        standardised, hidden = self.ranker.forward(features)
        scores = self.ranker.scores_of(standardised, hidden)
        top = best(scores, candidates.rows, config.k)
        if self.learning:
            self.keep(
                message.user_id, candidates.rows, features, tuple(candidates.rows[top].tolist())
            )
        ids = self.items.ids
        reasons = self._because(candidates, standardised, top)
        items = [
            (ids[candidates.rows[column]], round(float(scores[column]), 6), reason)
            for column, reason in zip(top.tolist(), reasons, strict=True)
        ]
        self.quality.served([item for item, _, _ in items])
        recommendation = Recommendation(
            message.user_id, items, message.as_of, message.version, config.model_name
        )
        return recommendation, candidates  # type: ignore[return-value]

    def _because(
        self, candidates: Candidates, standardised: np.ndarray, columns: np.ndarray
    ) -> list[str]:
        """Per listed item (``columns``), which group of signals added most to its score through
        the linear weights (see :data:`~messages.Item`); the hidden layer, a mixture of all, is
        left out."""
        groups, sources = _reasons(
            standardised,
            columns,
            self.ranker.weights,
            _GROUPS,
            candidates.category_share,
            candidates.links,
            candidates.recency,
        )
        ids = self.items.ids
        history = candidates.history
        return [
            _REASONS[group] if group else ids[history[source]]  # type: ignore[misc]
            for group, source in zip(groups.tolist(), sources.tolist(), strict=True)
        ]

    def quality_record(self, events: int, as_of: int) -> QualityRecord:
        """The rolling quality of what this replica served, after ``events`` events."""
        quality = self.quality
        return QualityRecord(
            self.config.model_name,
            as_of,
            events,
            quality.window_targets,
            round(quality.hit_rate, 6),
            round(quality.ndcg, 6),
            round(quality.coverage(len(self.items)), 6),
            len(self.items),
            {
                name: round(float(weight), 6)
                for name, weight in zip(FEATURES, self.ranker.weights, strict=True)
            },
        )

    def snapshot(self) -> ReplicaSnapshot:
        return self.items.snapshot(), self.ranker.snapshot()

    @classmethod
    def restore(
        cls, snapshot: ReplicaSnapshot, config: EngineConfig, quality_window: int = 1_000
    ) -> ModelReplica:
        replica = cls(config, quality_window)
        items, ranker = snapshot
        replica.items = ItemModel.restore(items, config)
        replica.ranker = Ranker.restore(ranker, config)
        return replica


@njit(
    "UniTuple(int64[:], 2)(float64[:, ::1], int64[:], float64[:], float64[:, ::1], float64[:],"
    " float64[:, :], float64[:])",
    cache=True,
)
def _reasons(
    standardised: np.ndarray,
    columns: np.ndarray,
    weights: np.ndarray,
    groups: np.ndarray,
    category_share: np.ndarray,
    links: np.ndarray,
    recency: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Per column, the code of its strongest group of signals in :data:`_REASONS` (co-visitation
    counts only with a link, content only for an item of one of the user's categories, else
    "trending") and its most linked history entry (by link weight times recency)."""
    codes = np.empty(len(columns), np.int64)
    sources = np.zeros(len(columns), np.int64)
    for position in range(len(columns)):
        column = columns[position]
        contributions = (standardised[column] * weights) @ groups
        if category_share[column] <= 0:
            contributions[3] = -np.inf
        winner = np.argmax(contributions)
        strongest = 0.0
        for index in range(len(recency)):
            linked = links[index, column] * recency[index]
            if linked > strongest:
                strongest, sources[position] = linked, index
        if winner == 0 and strongest > 0:
            codes[position] = 0
        elif winner == 1 or winner == 3:
            codes[position] = winner
        else:
            codes[position] = 2
    return codes, sources


@njit("uint16(uint64)", cache=True)
def _half_of(bits: int) -> int:
    """numpy's ``npy_doublebits_to_halfbits``: a double's bits to its nearest half's."""
    sign = np.uint16((bits >> np.uint64(48)) & np.uint64(0x8000))
    exponent = bits & np.uint64(0x7FF0000000000000)
    significand = bits & np.uint64(0x000FFFFFFFFFFFFF)
    if exponent >= np.uint64(0x40F0000000000000):  # too large for a half, infinite or NaN
        if exponent == np.uint64(0x7FF0000000000000) and significand:
            nan = np.uint16(0x7C00 + (significand >> np.uint64(42)))
            return sign + (nan if nan != 0x7C00 else np.uint16(0x7C01))
        return sign + np.uint16(0x7C00)
    if exponent <= np.uint64(0x3F00000000000000):  # a subnormal half, or zero
        if exponent < np.uint64(0x3E60000000000000):
            return sign
        shifted = (np.uint64(0x0010000000000000) + significand) << (
            (exponent >> np.uint64(52)) - np.uint64(998)
        )
        if shifted & np.uint64(0x003FFFFFFFFFFFFF) != np.uint64(0x0010000000000000):
            shifted += np.uint64(0x0010000000000000)
        return sign + np.uint16(shifted >> np.uint64(53))
    if significand & np.uint64(0x000007FFFFFFFFFF) != np.uint64(0x0000020000000000):
        significand += np.uint64(0x0000020000000000)  # to nearest, ties to even
    # A carry out of the significand raises the exponent, as it should.
    return sign + np.uint16(
        (significand >> np.uint64(42))
        + ((exponent - np.uint64(0x3F00000000000000)) >> np.uint64(42))
    )


@njit("uint16[:, ::1](float64[:, ::1])", cache=True)
def _half_bits(values: np.ndarray) -> np.ndarray:
    """The IEEE half-precision bits of each value, rounded to the nearest even as numpy's
    ``astype(np.float16)`` rounds them (bit for bit the same, infinities and NaNs included), in
    about a third of its time: numpy converts a double to a half in a software routine per
    value, 24 us for a list of 300 candidates."""
    rows, columns = values.shape
    halves = np.empty((rows, columns), np.uint16)
    bits = values.view(np.uint64)
    for row in range(rows):
        for column in range(columns):
            halves[row, column] = _half_of(bits[row, column])
    return halves
