"""The per-user gate in front of the user step: de-duplication, lateness, event-time windows.

Every event of one user passes through that user's :class:`UserGate`, in arrival order:

1. **Duplicates.** An event whose ``event_id`` is among the user's last ``ids_per_user`` accepted
   ids is dropped with the reason ``duplicate event_id X`` (memory per user is bounded by that
   count; events without an id are never duplicates).
2. **Lateness.** An event older than the newest timestamp accepted for the user is *late*. Late
   by at most ``allowed_lateness_ms`` it is accepted and counted in :attr:`Window.late`; later
   than that it is dropped with the reason ``late by N s (allowed M s)``.
3. **Windows.** With ``length_ms == 0`` every accepted event is a window of its own and leaves
   at once. Otherwise windows are tumbling, aligned to the epoch (``[n * length, (n + 1) *
   length)``) and per user: the open window closes when an event of the same user arrives at or
   after its end, or when the caller calls :meth:`UserGate.flush` (end of input; in live mode
   also after some processing time without events, see below). A late event joins the open
   window (or opens one if none is open), so late events are never held beyond the window that
   is open when they arrive.
4. **forget_user** closes the open window, then yields a :class:`Forget` and resets the gate:
   nothing about the user, not even the ids seen, is kept.

Closing only on the user's next event keeps the result a function of the event stream alone, so
a replay is reproducible and equals the sequential engine. Its cost is latency: a user who stops
interacting would never get the list for their last window. The live dataflow therefore also
flushes a window after ``window.close_after_idle_s`` of processing time without events of that
user, which trades reproducibility (the split now depends on arrival timing) for a bounded delay;
replays leave it off.

>>> from operators.events import Event
>>> settings = GateSettings(length_ms=0, allowed_lateness_ms=60_000, ids_per_user=100)
>>> gate = UserGate()
>>> (window,) = gate.offer(Event("u1", "i1", 1_000_000, "view", event_id="a"), settings)
>>> [event.item_id for event in window.events], window.late
(['i1'], 0)
>>> gate.offer(Event("u1", "i2", 1_000_500, "view", event_id="a"), settings)[0].reason
'duplicate event_id a'
>>> gate.offer(Event("u1", "i3", 1_000_000 - 90_000, "view"), settings)[0].reason
'late by 90 s (allowed 60 s)'
>>> gate.offer(Event("u1", "i4", 1_000_000 - 30_000, "view"), settings)[0].late
1
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from operators.events import Event

#: What :meth:`UserGate.snapshot` returns: (open window index, late events in it, its events,
#: newest accepted ts, recent event ids oldest first).
GateSnapshot = tuple[int | None, int, tuple[Event, ...], int | None, tuple[str, ...]]


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
class Window:
    """A closed window: the user's accepted events in arrival order, ``late`` of them late."""

    events: tuple[Event, ...]
    late: int = 0


@dataclass(frozen=True, slots=True)
class Forget:
    """The user asked to be forgotten: delete every bit of their state."""

    event: Event


@dataclass(frozen=True, slots=True)
class Dropped:
    """An event the gate refused (to be dead-lettered with ``reason``)."""

    event: Event
    reason: str


GateOutput = Window | Forget | Dropped


def _seconds(ms: int) -> str:
    whole, rest = divmod(ms, 1000)
    return str(whole) if rest == 0 else f"{ms / 1000:.3f}".rstrip("0")


class UserGate:
    """One user's gate state; feed it the user's events with :meth:`offer`."""

    __slots__ = ("_id_set", "_ids", "_late", "_latest", "_pending", "_window")

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._window: int | None = None
        self._late = 0
        self._pending: list[Event] = []
        self._latest: int | None = None
        self._ids: deque[str] = deque()
        self._id_set: set[str] = set()

    @property
    def has_open_window(self) -> bool:
        return self._window is not None

    @property
    def is_empty(self) -> bool:
        """True when the gate holds nothing (a fresh gate: it may be dropped)."""
        return self._window is None and self._latest is None and not self._ids

    def offer(self, event: Event, settings: GateSettings) -> list[GateOutput]:
        """Admit one event; returns what leaves the gate because of it, in order."""
        if event.is_forget:
            closed = self.flush()
            self._reset()
            return [*closed, Forget(event)]
        if event.event_id is not None and event.event_id in self._id_set:
            return [Dropped(event, f"duplicate event_id {event.event_id}")]
        late = self._latest is not None and event.ts < self._latest
        if late:
            behind = self._latest - event.ts  # type: ignore[operator]
            if behind > settings.allowed_lateness_ms:
                allowed = _seconds(settings.allowed_lateness_ms)
                return [Dropped(event, f"late by {_seconds(behind)} s (allowed {allowed} s)")]
        else:
            self._latest = event.ts
        self._remember(event.event_id, settings.ids_per_user)
        if settings.length_ms == 0:
            return [Window((event,), int(late))]
        closed: list[GateOutput] = []
        index = event.ts // settings.length_ms
        if self._window is not None and index > self._window and not late:
            closed.extend(self.flush())
        if self._window is None:
            self._window = index
        self._pending.append(event)
        self._late += late
        return closed

    def flush(self) -> list[Window]:
        """Close the open window, if any (end of input, or idle in live mode)."""
        if self._window is None:
            return []
        window = Window(tuple(self._pending), self._late)
        self._window = None
        self._late = 0
        self._pending = []
        return [window]

    def _remember(self, event_id: str | None, capacity: int) -> None:
        if event_id is None or capacity == 0:
            return
        self._ids.append(event_id)
        self._id_set.add(event_id)
        while len(self._ids) > capacity:
            self._id_set.discard(self._ids.popleft())

    def snapshot(self) -> GateSnapshot:
        """An immutable, compact copy of the state (events are immutable)."""
        return (self._window, self._late, tuple(self._pending), self._latest, tuple(self._ids))

    @classmethod
    def restore(cls, snapshot: GateSnapshot) -> UserGate:
        gate = cls()
        window, late, pending, latest, ids = snapshot
        gate._window = window
        gate._late = late
        gate._pending = list(pending)
        gate._latest = latest
        gate._ids = deque(ids)
        gate._id_set = set(ids)
        return gate
