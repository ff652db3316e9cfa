"""The messages from the user step to the model replicas, and what the replicas emit.

For each accepted event the user step sends, in this order: maybe a training request
(:class:`Train` when the event opens the user's window, :class:`Label` when it adds a new item
to an open one), the event's :class:`~operators.item_model.Observation`, and a :class:`Serve`
when the window closes with it. A window closed later sends a :class:`Serve` alone, a
``forget_user`` event or a user whose state expires a :class:`ForgetUser`.
Observations go to every replica (each keeps a full copy of the item knowledge): to the other
workers' replicas one :class:`ObservationBlock` per batch. The other messages go to the user's own
replica, which answers a :class:`Serve` with a :class:`Recommendation` and a :class:`ForgetUser`
with a :class:`Tombstone`.

Messages are small slotted dataclasses of primitives, so they pickle cheaply between workers.

>>> Recommendation("u1", [("i2", 0.9, "i1")], as_of=1700000000000, version=3,
...                model="streamrec").to_json()
b'{"user_id":"u1","items":[{"item_id":"i2","score":0.9,"because":"i1"}],"as_of":1700000000000,"version":3,"model":"streamrec"}'
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from operators.candidates import Entry
from operators.item_model import Observation, ObservationFields
from operators.jsonl import json_bytes


@dataclass(slots=True)
class Train:
    """The event opening a window: build the list the user's history gave just before it and
    learn from ``label`` (the event's item, when new to the user)."""

    user_id: str
    #: The user's recent items before the event, oldest first.
    history: tuple[Entry, ...]
    seen: tuple[str, ...]
    label: str | None


@dataclass(slots=True)
class Label:
    """A later event of the open window chose ``item_id``, new to the user: learn from it on the
    list of the window's :class:`Train`."""

    user_id: str
    item_id: str


@dataclass(slots=True)
class Serve:
    """The window closed: serve list ``version`` from the user's recent items."""

    user_id: str
    history: tuple[Entry, ...]
    seen: tuple[str, ...]
    version: int
    as_of: int
    #: Wall-clock time (POSIX seconds) the event that closed the window reached the user step,
    #: for the event-to-list latency; None when no event closed it (a timer, the input's end).
    received_s: float | None = None


@dataclass(slots=True)
class ForgetUser:
    """The user's state was deleted (``forget_user``, or expiry after being idle in a live job):
    drop their open list and answer with a tombstone. After an expiry the tombstone matters
    too: the user's next list starts again at version 1, which a consumer holding their last
    list would otherwise drop as a repeat."""

    user_id: str
    #: The forget's timestamp, or the expired user's last event time.
    as_of: int


@dataclass(slots=True)
class ObservationBlock:
    """The observations of one batch of one worker's users, in columns: how they cross to the
    other workers' replicas. Pickled, a block is a few tuples of primitives; a tuple per
    observation cost three times as much to pickle and unpickle (0.9 against 0.3 us on Online
    Retail's), and each was one more message for the replica step to dispatch.

    >>> block = ObservationBlock.of([Observation("tea", 1, 5.0, True, ()),
    ...                              Observation("jam", 2, 1.0, True, (("tea", 1, 5.0),), "food")])
    >>> len(block), block.recent_counts
    (2, (0, 1))
    >>> list(block)[1]
    ('jam', 2, 1.0, True, (('tea', 1, 5.0),), 'food')
    """

    item_ids: tuple[str, ...]
    ts: tuple[int, ...]
    weights: tuple[float, ...]
    first: tuple[bool, ...]
    categories: tuple[str | None, ...]
    #: How many previous items each observation has; their fields follow, flattened in order.
    recent_counts: tuple[int, ...]
    recent_ids: tuple[str, ...]
    recent_ts: tuple[int, ...]
    recent_weights: tuple[float, ...]

    @classmethod
    def of(cls, observations: Sequence[Observation]) -> ObservationBlock:
        ids, ts, weights, first, recents, categories = zip(*observations, strict=True)
        previous = [entry for recent in recents for entry in recent]
        recent_ids, recent_ts, recent_weights = (
            zip(*previous, strict=True) if previous else ((),) * 3
        )
        counts = tuple(map(len, recents))
        return cls(
            ids, ts, weights, first, categories, counts, recent_ids, recent_ts, recent_weights
        )

    def __len__(self) -> int:
        return len(self.item_ids)

    def __iter__(self) -> Iterator[ObservationFields]:
        """Each observation's fields, in order."""
        previous = list(zip(self.recent_ids, self.recent_ts, self.recent_weights, strict=True))
        start = 0
        observations = zip(
            self.item_ids,
            self.ts,
            self.weights,
            self.first,
            self.recent_counts,
            self.categories,
            strict=True,
        )
        for item_id, ts, weight, first, count, category in observations:
            end = start + count
            yield item_id, ts, weight, first, tuple(previous[start:end]), category
            start = end


#: What the user step sends a replica.
ReplicaMessage = Train | Label | Observation | ObservationBlock | Serve | ForgetUser


@dataclass(slots=True)
class Tombstone:
    """The answer to :class:`ForgetUser`: the user's output becomes null."""

    user_id: str
    as_of: int

    def to_json(self) -> bytes:
        """The JSON Lines form (a Kafka output has a null value under the user's key)."""
        return json_bytes({"user_id": self.user_id, "tombstone": True, "as_of": self.as_of})


#: One recommended item: (item_id, score, because). ``because`` is the user's history item it
#: is most linked to, ``"similar"`` (the interest vector), ``"category"`` (popular in a category
#: of the user's recent items) or ``"trending"``.
Item = tuple[str, float, str]


@dataclass(slots=True)
class Recommendation:
    """The list handed out for a user after the window ``version`` (scores best first)."""

    user_id: str
    items: list[Item]
    as_of: int
    version: int
    model: str

    def to_json(self) -> bytes:
        return json_bytes(
            {
                "user_id": self.user_id,
                "items": [
                    {"item_id": item, "score": score, "because": because}
                    for item, score, because in self.items
                ],
                "as_of": self.as_of,
                "version": self.version,
                "model": self.model,
            }
        )
