"""The job's accounting: what came in and where every message went.

Each step counts what it handles and the counts are summed in one place, so the totals are the
dataflow's own, not a re-reading of its files. Once the input is exhausted and every window
closed, ``events_in == processed + dead_lettered``: an event is either processed (learned by
the user step, ``late`` ones included, or a ``forget_user``) or dead-lettered, never both or
neither.

>>> total = Tally(events_in=3) + Tally(processed=2, late=1) + Tally(dead_lettered=1)
>>> total.balanced, total.pending
(True, 0)
>>> total.as_dict()["late"]
1
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from operators.intake import DEAD_LETTER_KINDS, dead_letter_kind


@dataclass(frozen=True, slots=True)
class Tally:
    #: Input messages read (valid or not).
    events_in: int = 0
    #: Events the user step learned (late ones included) or forgot users by.
    processed: int = 0
    #: Messages written to the dead letter (unparseable, invalid, duplicate, too late).
    dead_lettered: int = 0
    #: Processed events that were late but within the allowed lateness.
    late: int = 0
    #: Lists emitted.
    lists_out: int = 0
    #: Users forgotten (null outputs emitted).
    tombstones: int = 0
    #: Users whose state the user step holds (created minus forgotten and expired).
    users: int = 0
    #: Dead letters by kind (``operators.intake.DEAD_LETTER_KINDS``, in that order).
    dead_unparseable: int = 0
    dead_invalid: int = 0
    dead_oversize: int = 0
    dead_duplicate: int = 0
    dead_late: int = 0
    dead_kafka_error: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(*(a + b for a, b in zip(self.astuple(), other.astuple(), strict=True)))

    @classmethod
    def of_dead_letters(cls, reasons: Iterable[str]) -> Tally:
        """The count of these dead letters, in all and by kind.

        >>> Tally.of_dead_letters(["invalid JSON: x", "duplicate event_id 7"]).dead_by_kind()
        {'unparseable': 1, 'invalid': 0, 'oversize': 0, 'duplicate': 1, 'late': 0, 'kafka_error': 0}
        """
        kinds = Counter(dead_letter_kind(reason) for reason in reasons)
        by_kind = {f"dead_{kind}": count for kind, count in kinds.items()}
        return cls(dead_lettered=sum(kinds.values()), **by_kind)

    def dead_by_kind(self) -> dict[str, int]:
        return {kind: getattr(self, f"dead_{kind}") for kind in DEAD_LETTER_KINDS}

    def astuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, spec.name) for spec in dataclasses.fields(self))

    def as_dict(self) -> dict[str, int]:
        return {spec.name: getattr(self, spec.name) for spec in dataclasses.fields(self)}

    @property
    def pending(self) -> int:
        """Events read but not yet processed or dead-lettered (0 at the end of a replay)."""
        return self.events_in - self.processed - self.dead_lettered

    @property
    def balanced(self) -> bool:
        return self.pending == 0
