"""Intake: raw input with its origin becomes an admitted event or a dead letter.

Every input message carries where it came from (:class:`Origin`: a file and line number, or a
Kafka topic, partition and offset) and ``seq``, its position in the input's order. Validation
never raises: a message that is not a valid event becomes a :class:`DeadLetter` holding the
original bytes, the reason and the origin, so a person can find and fix it, and the stream goes
on. ``seq`` travels with everything an event causes; the dataflow's keyed steps sort each batch
by it, which gives them the order of the input rather than Bytewax's per-batch key order.

With a :class:`~operators.privacy.Pseudonymiser` the admitted event carries the pseudonym, and
so does its ``raw`` (the canonical JSON of the pseudonymised event), while a dead letter of
input that did not parse keeps no payload, only its length (see :mod:`operators.privacy`).

>>> import orjson
>>> raw = Raw(7, Origin("events.jsonl", 8), b'{"user_id": "u1", "ts": 1700000000000}')
>>> letter = admit(raw, frozenset({"view"}), max_bytes=1024)
>>> letter.reason, letter.origin.fields()
('missing field "type"', {'source': 'events.jsonl', 'line': 8})
>>> sorted(orjson.loads(letter.to_json()))
['line', 'raw', 'reason', 'source']
>>> ok = admit(Raw(8, Origin("events", 41, partition=2), b'{"user_id": "u1", "item_id": "i1", '
...     b'"ts": 1700000000000, "type": "view"}'), frozenset({"view"}), max_bytes=1024)
>>> ok.event.item_id, ok.seq
('i1', 8)
>>> withheld = letter.withheld()
>>> withheld.raw, orjson.loads(withheld.to_json())["raw_withheld_bytes"]
(None, 38)

Every reason falls in one of a few kinds (:data:`DEAD_LETTER_KINDS`), a bounded set that metrics
can label by:

>>> dead_letter_kind(letter.reason), dead_letter_kind("late by 90 s (allowed 60 s)")
('invalid', 'late')
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from operators.events import Event, Rejected, parse_event
from operators.jsonl import json_bytes
from operators.privacy import Pseudonymiser


# Origin, Raw and Admitted are made once per event and never changed, but not frozen: a frozen
# dataclass's __init__ (object.__setattr__ per field) costs four times as much.
@dataclass(slots=True)
class Origin:
    """Where one input message came from."""

    #: The file the line was read from, or the Kafka topic.
    source: str
    #: The 1-based line number in that file, or the Kafka offset.
    offset: int
    #: The Kafka partition (None for files).
    partition: int | None = None

    def fields(self) -> dict[str, Any]:
        if self.partition is None:
            return {"source": self.source, "line": self.offset}
        return {"topic": self.source, "partition": self.partition, "offset": self.offset}


@dataclass(slots=True)
class Raw:
    """One input message before validation; ``seq`` is its position in the input's order."""

    seq: int
    origin: Origin
    value: bytes | None


@dataclass(slots=True)
class Admitted:
    """A valid event with its position and origin (kept for dead-lettering it later)."""

    seq: int
    event: Event
    origin: Origin
    raw: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input the job could not use: the original bytes, why, and where they came from."""

    reason: str
    origin: Origin
    raw: bytes | None
    #: The length of a payload left out (:meth:`withheld`), else None.
    withheld_bytes: int | None = None

    def withheld(self) -> DeadLetter:
        """This dead letter without its payload (it may hold a raw user id)."""
        size = None if self.raw is None else len(self.raw)
        return DeadLetter(self.reason, self.origin, None, size)

    def to_json(self) -> bytes:
        """One JSON object; ``raw`` is the text when it is UTF-8, else ``raw_base64``."""
        record: dict[str, Any] = {"reason": self.reason, **self.origin.fields()}
        if self.raw is not None:
            try:
                record["raw"] = self.raw.decode("utf-8")
            except UnicodeDecodeError:
                record["raw_base64"] = base64.b64encode(self.raw).decode("ascii")
        if self.withheld_bytes is not None:
            record["raw_withheld_bytes"] = self.withheld_bytes
        return json_bytes(record)


def admit(
    raw: Raw, known_types: frozenset[str], max_bytes: int, users: Pseudonymiser | None = None
) -> Admitted | DeadLetter:
    """Validate one message (and pseudonymise its user with ``users``); never raises on bad
    input."""
    if raw.value is None:
        return DeadLetter("empty message (null value)", raw.origin, None)
    parsed = parse_event(raw.value, known_types, max_bytes)
    if isinstance(parsed, Rejected):
        letter = DeadLetter(parsed.reason, raw.origin, raw.value)
        return letter if users is None else letter.withheld()
    if users is None:
        return Admitted(raw.seq, parsed, raw.origin, raw.value)
    event = users.event(parsed)
    return Admitted(raw.seq, event, raw.origin, event.to_json())


#: The kind of every dead letter, by the start of its reason (the first match wins); any other
#: reason is ``invalid`` (a field missing or of the wrong type, an unknown event type, ...).
_KIND_BY_PREFIX = (
    ("invalid JSON", "unparseable"),
    ("empty message", "unparseable"),
    ("expected a JSON object", "unparseable"),
    ("message of ", "oversize"),
    ("duplicate event_id", "duplicate"),
    ("late by", "late"),
    ("before forget_user", "late"),
    ("Kafka error", "kafka_error"),
)
DEAD_LETTER_KINDS = ("unparseable", "invalid", "oversize", "duplicate", "late", "kafka_error")


def dead_letter_kind(reason: str) -> str:
    """The kind of a dead letter's ``reason``, one of :data:`DEAD_LETTER_KINDS`."""
    for prefix, kind in _KIND_BY_PREFIX:
        if reason.startswith(prefix):
            return kind
    return "invalid"
