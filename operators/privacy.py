"""Pseudonymisation: user ids replaced by a keyed hash right after parsing.

With ``privacy.pseudonymise_users: true`` every event's ``user_id`` becomes
``HMAC-SHA256(key, user_id)`` in hex as soon as it is parsed, before the gate, any state, log,
metric or dead letter sees it, so the job never holds the raw id: state keys, snapshots, dead
letters and output lists all carry the pseudonym. The key comes only from the environment
variable ``STREAMREC_USER_KEY`` (a Kubernetes Secret), never from the config file; without it
the job refuses to start. The same key always gives the same pseudonym, so a user's events
still meet in one state, across restarts too, and a consumer that holds the key maps its known
ids to the output keys (:meth:`Pseudonymiser.pseudonym`); without the key a pseudonym cannot be
reversed or linked to an id.

Input that does not parse cannot be pseudonymised (its user id cannot be found reliably), so
its dead letter keeps no payload: only the reason, the origin (where an operator with access to
the input finds the message) and the payload's length (:meth:`DeadLetter.withheld
<operators.intake.DeadLetter.withheld>`). A parsed event that the gate refuses (duplicate, too
late) is dead-lettered as its canonical JSON with the pseudonym in place of the id.

>>> users = Pseudonymiser(b"not-a-real-key")
>>> users.pseudonym("17850")[:16]
'95b57b263964735c'
>>> users
Pseudonymiser(key=<hidden>)
>>> from operators.events import Event
>>> users.event(Event("17850", "85123A", 1291191960000, "purchase")).user_id == users.pseudonym(
...     "17850")
True
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

import msgspec

from operators.events import Event

#: The environment variable that holds the pseudonymisation key.
USER_KEY_ENV = "STREAMREC_USER_KEY"


@dataclass(frozen=True, slots=True)
class Pseudonymiser:
    """Replaces user ids by ``HMAC-SHA256(key, id)`` (64 hex digits)."""

    key: bytes

    def __repr__(self) -> str:
        return "Pseudonymiser(key=<hidden>)"

    def pseudonym(self, user_id: str) -> str:
        return hmac.new(self.key, user_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def event(self, event: Event) -> Event:
        """``event`` with its user id replaced by the pseudonym."""
        return msgspec.structs.replace(event, user_id=self.pseudonym(event.user_id))
