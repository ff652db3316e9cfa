"""The per-user gate in front of the user step: de-duplication, lateness, event-time windows.

Every event of one user passes through that user's :class:`UserGate`, in arrival order:

1. **Duplicates.** An event whose ``event_id`` is among the user's last ``ids_per_user`` accepted
   ids is dropped with the reason ``duplicate event_id X`` (events without an id are never
   duplicates). The ids are kept as 8-byte BLAKE2b digests in one ``bytes``: 800 bytes for 100
   ids where a deque and a set of strings took about 16 KB, and nothing for a user without ids
   (an empty deque alone took 760 bytes). Two distinct ids of one user collide with probability
   about ``ids_per_user / 2**64`` per event: negligible next to a lost event.
2. **Lateness.** An event older than the newest timestamp accepted for the user is *late*. Late
   by at most ``allowed_lateness_ms`` it is accepted and flagged (:attr:`Learn.late`); later
   than that it is dropped with the reason ``late by N s (allowed M s)``.
3. **Learning.** Every accepted event leaves at once as a :class:`Learn`: the models learn from
   each event as it arrives, whatever the window length.
4. **Windows** decide when the user gets a fresh list. With ``length_ms == 0`` every event is a
   window of its own, learned and served in one request. Otherwise windows are tumbling,
   aligned to the epoch (``[n * length, (n + 1) * length)``) and per user: the event opening a
   window trains the ranker, and the window closes with a :class:`Serve` when an event of the
   same user arrives at or after its end, when :meth:`UserGate.close_before` is asked about a
   later moment, or on :meth:`UserGate.flush` (end of input; in live mode also after some
   processing time without events, see below). A late event joins the open window (or opens
   one), so it is never held back.
5. **forget_user** yields a :class:`Forget` and resets the gate: nothing about the user, not
   even the ids seen, is kept, except the forget's timestamp ``T``. It deletes everything
   received before it, whatever the timestamps (an event newer than ``T`` that came first is
   forgotten too: nothing the user sent before asking stays). An event that arrives after it
   with ``ts <= T`` happened before the request and is dropped (``before forget_user at T``), so
   delayed input cannot bring the forgotten past back; a newer one starts the user afresh. The
   dataflow drops ``T`` too (:meth:`UserGate.end_forget_guard`) at the end of the input, and in
   the live job once the user has been idle ``privacy.forget_guard_s``.

Closing on the user's next event keeps the result a function of the event stream alone, so a
replay is reproducible and equals the sequential engine, and the list is as fresh as possible
when the user is back. A live user who stops interacting would however wait for their list, so
the live dataflow also closes a window after ``window.close_after_idle_s`` of processing time
without events of that user; replays leave that off. A user who stays away would then find a
list made when they left, from what the models knew then, so the live job also serves an idle
user's list again (``window.refresh_idle_s``) on the schedule :func:`next_refresh` gives: the
first refresh that long after their last event, then twice, four times... as long after it,
until the user's state expires. A user back after ``d`` (at least the first span) finds a list
made at most ``d / 2`` before, at the cost of a handful of lists per absence.

>>> from operators.events import Event
>>> settings = GateSettings(length_ms=60_000, allowed_lateness_ms=60_000, ids_per_user=100)
>>> gate = UserGate()
>>> gate.offer(Event("u1", "i1", 1_000_000, "view", event_id="a"), settings)[0].train
True
>>> gate.offer(Event("u1", "i2", 1_000_500, "view", event_id="a"), settings)[0].reason
'duplicate event_id a'
>>> gate.offer(Event("u1", "i3", 1_000_000 - 90_000, "view"), settings)[0].reason
'late by 90 s (allowed 60 s)'
>>> gate.offer(Event("u1", "i4", 1_000_000 - 30_000, "view"), settings)[0].late
True
>>> gate.close_before(1_010_000, settings), gate.close_before(1_020_000, settings)
([], [Serve()])
>>> forget = Event("u1", None, 1_100_000, "forget_user")
>>> gate.offer(forget, settings) == [Forget(forget)]
True
>>> gate.offer(Event("u1", "i5", 1_050_000, "view"), settings)[0].reason
'before forget_user at ts 1100000'
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from hashlib import blake2b
from typing import TypeVar

from operators.events import Event

#: What :meth:`UserGate.snapshot` returns: (open window index, newest accepted ts, the digests of
#: the recent event ids oldest first, ts of the last forget_user still guarded). Stores written
#: before the digests hold the ids as a tuple of strings.
GateSnapshot = tuple[int | None, int | None, bytes, int | None]

#: Bytes of one event id's digest.
DIGEST_SIZE = 8


def id_digest(event_id: str) -> bytes:
    """The digest the gate keeps for ``event_id``."""
    return blake2b(event_id.encode(), digest_size=DIGEST_SIZE).digest()


def _holds(digests: bytes, digest: bytes) -> bool:
    """Whether ``digest`` is one of the ``DIGEST_SIZE``-aligned digests in ``digests`` (a match
    straddling two digests is not one)."""
    at = digests.find(digest)
    while at > 0 and at % DIGEST_SIZE:
        at = digests.find(digest, at + 1)
    return at >= 0


@dataclass(frozen=True, slots=True)
class GateSettings:
    """The gate's knobs (shared by all users; not part of a user's snapshot)."""

    #: Window length in event-time milliseconds; 0 makes every event its own window.
    length_ms: int = 0
    #: How far behind the user's newest event an event may be and still be processed.
    allowed_lateness_ms: int = 0
    #: Event ids remembered per user for de-duplication (0 turns de-duplication off).
    ids_per_user: int = 0


@dataclass(frozen=True, slots=True)
class Learn:
    """An accepted event, to be learned at once.

    ``train``: it opens a window, so the ranker is trained on it (its item against the list the
    user's history would have given just before). ``serve``: its window closes with it (length
    0), so the same request also serves the user's new list.
    """

    event: Event
    late: bool = False
    train: bool = True
    serve: bool = True


@dataclass(frozen=True, slots=True)
class Serve:
    """The user's open window closed: serve a fresh list from everything learned so far."""


@dataclass(frozen=True, slots=True)
class Forget:
    """The user asked to be forgotten: delete every bit of their state."""

    event: Event


@dataclass(frozen=True, slots=True)
class Dropped:
    """An event the gate refused (to be dead-lettered with ``reason``)."""

    event: Event
    reason: str


GateOutput = Learn | Serve | Forget | Dropped


Span = TypeVar("Span", int, float, timedelta)


def next_refresh(idle: Span, first: Span) -> Span:
    """How long after a user's last event their list is next served again, when the latest one
    was served ``idle`` after it: the first of ``first``, ``2 * first``, ``4 * first``... that
    is later than ``idle``. Live, in processing time; the evaluator's twin, in event time.

    >>> [next_refresh(idle, 24) for idle in (0, 1, 24, 47, 48, 100)]
    [24, 24, 48, 48, 96, 192]
    """
    span = first
    while span <= idle:
        span *= 2
    return span


def _seconds(ms: int) -> str:
    whole, rest = divmod(ms, 1000)
    return str(whole) if rest == 0 else f"{ms / 1000:.3f}".rstrip("0")


class UserGate:
    """One user's gate state; feed it the user's events with :meth:`offer`."""

    __slots__ = ("_forgotten", "_ids", "_latest", "_window")

    def __init__(self) -> None:
        self._reset()
        self._forgotten: int | None = None

    def _reset(self) -> None:
        self._window: int | None = None
        self._latest: int | None = None
        #: Digests of the recent event ids, oldest first.
        self._ids = b""

    @property
    def has_open_window(self) -> bool:
        return self._window is not None

    @property
    def guards_forget(self) -> bool:
        """True while the timestamp of a forget_user is kept (see the module docstring)."""
        return self._forgotten is not None

    @property
    def is_empty(self) -> bool:
        """True when the gate holds nothing (a fresh gate: it may be dropped)."""
        return (
            self._window is None
            and self._latest is None
            and not self._ids
            and self._forgotten is None
        )

    def offer(self, event: Event, settings: GateSettings) -> list[GateOutput]:
        """Admit one event; returns what leaves the gate because of it, in order."""
        if event.is_forget:
            # Everything the user did is already learned; a list for them would be dropped.
            self._reset()
            self._forgotten = max(event.ts, self._forgotten or event.ts)
            return [Forget(event)]
        if self._forgotten is not None and event.ts <= self._forgotten:
            return [Dropped(event, f"before forget_user at ts {self._forgotten}")]
        digest = None if event.event_id is None else id_digest(event.event_id)
        if digest is not None and _holds(self._ids, digest):
            return [Dropped(event, f"duplicate event_id {event.event_id}")]
        late = self._latest is not None and event.ts < self._latest
        if late:
            behind = self._latest - event.ts  # type: ignore[operator]
            if behind > settings.allowed_lateness_ms:
                allowed = _seconds(settings.allowed_lateness_ms)
                return [Dropped(event, f"late by {_seconds(behind)} s (allowed {allowed} s)")]
        else:
            self._latest = event.ts
        self._remember(digest, settings.ids_per_user)
        if settings.length_ms == 0:
            return [Learn(event, late)]
        closed: list[GateOutput] = [] if late else list(self.close_before(event.ts, settings))
        opens = self._window is None
        if opens:
            self._window = event.ts // settings.length_ms
        return [*closed, Learn(event, late, train=opens, serve=False)]

    def close_before(self, ts: int, settings: GateSettings) -> list[Serve]:
        """Close the open window if it ended at or before ``ts`` (what an event at ``ts``
        would do first; the evaluator asks for a user's list this way at a basket's start)."""
        if self._window is None or ts // settings.length_ms <= self._window:
            return []
        return self.flush()

    def flush(self) -> list[Serve]:
        """Close the open window, if any (end of input, or idle in live mode)."""
        if self._window is None:
            return []
        self._window = None
        return [Serve()]

    def end_forget_guard(self) -> None:
        """Forget the last forget_user's timestamp too (no delayed input is expected)."""
        self._forgotten = None

    def _remember(self, digest: bytes | None, capacity: int) -> None:
        if digest is None or capacity == 0:
            return
        self._ids = (self._ids + digest)[-capacity * DIGEST_SIZE :]

    def snapshot(self) -> GateSnapshot:
        """An immutable, compact copy of the state (events are immutable)."""
        return self._window, self._latest, self._ids, self._forgotten

    @classmethod
    def restore(
        cls,
        snapshot: GateSnapshot
        | tuple[int | None, int | None, tuple[str, ...], int | None]
        | tuple[int | None, int | None, tuple[str, ...]],
    ) -> UserGate:
        gate = cls()
        # Stores written before the forget guard hold three fields.
        window, latest, ids, *forgotten = snapshot
        gate._window = window
        gate._latest = latest
        gate._ids = ids if isinstance(ids, bytes) else b"".join(map(id_digest, ids))
        gate._forgotten = forgotten[0] if forgotten else None
        return gate
