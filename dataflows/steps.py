"""The dataflow's keyed steps: Bytewax ``StatefulBatchLogic`` shells around the engine's states.

Each logic holds one key's state from ``operators`` and adds only what the runtime needs:

* input order: every message is ``(seq, message)`` with ``seq`` the input position of the event
  that caused it. Bytewax hands a step each batch grouped by key, so the replica step sorts
  each batch by ``seq`` (stably: one event's messages keep their order) before applying it,
  and with a file input and several workers holds what some worker has not caught up with
  (:class:`InputOrder`).
  With one worker the replica therefore sees exactly the sequence the sequential
  ``operators.engine.Engine`` gives it. A Kafka ``seq`` is the offset in its partition, which
  orders nothing across partitions, and a user's events may come from several; so the user
  step never lets a user's ``seq`` go down (it sends ``max(seq, the user's last)``) and the
  stable sort never puts one user's messages out of the order the user step sent them in (a
  list after the tombstone that came before it, say). Dedupe and lateness use event ids and
  timestamps, never ``seq``.
* compact snapshots (the engine states' own, plus the gate's and the messages a replica holds);
* processing-time timers of the live job (:class:`Timers`): a user's open window closes after
  ``close_after_idle``, an idle user's list is served again on the ``refresh`` schedule
  (:func:`~operators.windows.next_refresh`), a forget_user's guard ends after ``forget_guard``,
  idle users are dropped (and their replica told with a :class:`~operators.messages.ForgetUser`,
  so that it drops the list it kept for them and emits a tombstone). Replays run without them.
* small per-user objects: :class:`UserLogic` has ``__slots__``, as have the gate and state it
  holds (a live job holds one of each per user).
"""

from __future__ import annotations

import math
import time
from bisect import bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import chain, repeat
from operator import itemgetter
from time import perf_counter
from typing import NamedTuple, TypeVar, cast

from bytewax.operators import StatefulBatchLogic

from dataflows.metrics import REPLICAS, TIMINGS
from dataflows.routing import replica_keys, replica_of
from operators.config import Config, QualityConfig
from operators.engine_config import EngineConfig
from operators.intake import Admitted, DeadLetter
from operators.item_model import ItemModelSnapshot, Observation
from operators.messages import (
    ForgetUser,
    ObservationBlock,
    Recommendation,
    ReplicaMessage,
    Serve,
    Tombstone,
)
from operators.quality import QualityRecord
from operators.ranking import RankerSnapshot
from operators.replica import ModelReplica, ReplicaSnapshot
from operators.user_state import UserSnapshot, UserState
from operators.windows import (
    Dropped,
    Forget,
    GateSettings,
    GateSnapshot,
    Learn,
    UserGate,
    next_refresh,
)
from operators.windows import Serve as Close

#: ``seq`` of windows closed at the end of the input or by a timer: after every input position.
#: Bytewax closes them in user-key order, which the stable sorts downstream keep.
EOF_SEQ = 1 << 62

M = TypeVar("M")
#: A message with the input position of the event that caused it.
Sequenced = tuple[int, M]

#: The input position of a sequenced message.
_SEQ = itemgetter(0)


class Packet(NamedTuple):
    """What one worker's user step sends one replica per activation."""

    #: The sending worker's replica key.
    source: str
    #: The highest ``seq`` the sender has handled: it sends nothing before it any more (-1:
    #: none yet).
    through: int
    messages: list[Sequenced[ReplicaMessage]]


class InputOrder:
    """Releases a replica's messages in input order across workers: a message waits until every
    worker of ``sources`` has sent all it will send before it (a packet's ``through``). With a
    file input this makes each replica learn every event at its place in the file however far
    apart the workers run (within an epoch nothing else keeps them in step: in a two-process
    replay one ran 35,000 events ahead, and its lists lost up to 3 % HR@10 against one
    worker's). Without ``sources`` (a Kafka input, whose offsets order nothing across
    partitions) each batch is released at once, in ``seq`` order.

    >>> order = InputOrder(["a", "b"])
    >>> order.release([Packet("a", 2, [(1, "a1"), (2, "a2")])])
    []
    >>> order.release([Packet("b", 1, [(0, "b0")])])
    [(0, 'b0'), (1, 'a1')]
    >>> order.flush()
    [(2, 'a2')]
    """

    __slots__ = ("_held", "_through")

    def __init__(self, sources: list[str] | None = None) -> None:
        self._through = None if sources is None else dict.fromkeys(sources, -1)
        #: What waits: one list in input order per packet, in the order they came (a backlog
        #: of tens of thousands of messages is not sorted again at every batch).
        self._held: list[list[Sequenced[ReplicaMessage]]] = []

    @property
    def held(self) -> list[Sequenced[ReplicaMessage]]:
        """The messages waiting, in input order."""
        return sorted(chain.from_iterable(self._held), key=_SEQ)

    def hold(self, messages: list[Sequenced[ReplicaMessage]]) -> None:
        """Hold ``messages`` (a packet's, or a restored snapshot's) until every worker has passed
        them."""
        if messages:
            self._held.append(sorted(messages, key=_SEQ))

    def release(self, packets: list[Packet]) -> list[Sequenced[ReplicaMessage]]:
        """The messages every worker has sent all earlier ones of, in input order (stably: one
        event's messages keep their order)."""
        through = self._through
        if through is None:
            released = self.flush()
            for packet in packets:
                released += packet.messages
            released.sort(key=_SEQ)
            return released
        for packet in packets:
            self.hold(packet.messages)
            if packet.through > through[packet.source]:
                through[packet.source] = packet.through
        frontier = min(through.values())
        released = []
        waiting = []
        for messages in self._held:
            cut = bisect_right(messages, frontier, key=_SEQ)
            released += messages[:cut]
            if cut < len(messages):
                waiting.append(messages[cut:])
        self._held = waiting
        released.sort(key=_SEQ)
        return released

    def flush(self) -> list[Sequenced[ReplicaMessage]]:
        """Every message held (the input has ended), in input order."""
        released = self.held
        self._held = []
        return released


class Output(NamedTuple):
    """What the job emits for a user, serialised as soon as the replica has it: a batch of
    many lists in flight (the end of a replay closes every open window at once) holds only
    their bytes."""

    user_id: str
    #: The list's JSON document, or a tombstone's (:meth:`Tombstone.to_json`).
    document: bytes
    #: The user was forgotten: Kafka gets a null value under the user's key.
    tombstone: bool

    @classmethod
    def of(cls, ranked: Recommendation | Tombstone) -> Output:
        return cls(ranked.user_id, ranked.to_json(), isinstance(ranked, Tombstone))


@dataclass(slots=True)
class UserOutput:
    """What one call of a user's step sends on (the events of one batch, a timer, the end of
    the input): one item per user and call, not per event, so the steps after it handle a few
    items per batch instead of every event."""

    #: The replica that serves this user: the one on the user's own worker.
    replica: str
    #: For the replica, in order, each under the ``seq`` of the event that caused it.
    messages: list[Sequenced[ReplicaMessage]] = field(default_factory=list)
    #: The events the gate refused (late, duplicate, before a ``forget_user``).
    dead: list[DeadLetter] = field(default_factory=list)
    processed: int = 0
    late: int = 0
    #: Change in the users whose state the step holds (+1 created, -1 forgotten or expired).
    users: int = 0


@dataclass(frozen=True, slots=True)
class Timers:
    """Processing-time timers of the live job (None: off)."""

    close_after_idle: timedelta | None
    user_expire: timedelta | None
    forget_guard: timedelta | None = None
    #: The first span of an idle user's refreshes (see :func:`~operators.windows.next_refresh`).
    refresh: timedelta | None = None

    @classmethod
    def from_config(cls, config: Config) -> Timers:
        def span(seconds: float | None) -> timedelta | None:
            return None if seconds is None else timedelta(seconds=seconds)

        return cls(
            span(config.window.close_after_idle_s),
            span(config.state.user_idle_expire_s),
            span(config.privacy.forget_guard_s),
            span(config.window.refresh_idle_s),
        )

    @property
    def any(self) -> bool:
        return any(
            span is not None
            for span in (self.close_after_idle, self.user_expire, self.forget_guard, self.refresh)
        )


def _now() -> datetime:
    return datetime.now(UTC)


def _soonest(*moments: datetime | None) -> datetime | None:
    return min((moment for moment in moments if moment is not None), default=None)


def _after(start: datetime | None, span: timedelta | None) -> datetime | None:
    return None if start is None or span is None else start + span


#: (gate, user state or None, processing time of the last event as a POSIX timestamp or None,
#: the user's last ``seq``, processing time of the last list a timer served since that event).
UserLogicSnapshot = tuple[GateSnapshot, UserSnapshot | None, float | None, int, float | None]


def _posix(moment: datetime | None) -> float | None:
    return None if moment is None else moment.timestamp()


def _moment(posix: float | None) -> datetime | None:
    return None if posix is None else datetime.fromtimestamp(posix, UTC)


class UserLogic(StatefulBatchLogic[list[Admitted], UserOutput, UserLogicSnapshot]):
    """The user step: the gate, then the user's state for each closed window."""

    __slots__ = (
        "_engine",
        "_listed",
        "_replica",
        "_replicas",
        "_seq",
        "_settings",
        "_timers",
        "_touched",
        "_warm",
        "gate",
        "state",
    )

    def __init__(
        self,
        engine: EngineConfig,
        gate_settings: GateSettings,
        timers: Timers,
        resume: UserLogicSnapshot | None,
        warm: Mapping[str, UserSnapshot] | None = None,
        replicas: list[str] | None = None,
    ) -> None:
        self._engine = engine
        self._replicas = replicas or replica_keys(1)
        #: The user's replica key, found at the first event (the logic does not see its key).
        self._replica = ""
        self._settings = gate_settings
        self._timers = timers
        #: Pretrained users (a warm start), for a key that has no state of its own yet.
        self._warm = warm if resume is None else None
        self.gate = UserGate()
        self.state: UserState | None = None
        self._touched: datetime | None = None
        #: When a timer last served the user a list (None: not since their last event).
        self._listed: datetime | None = None
        #: The highest ``seq`` sent for the user (see the module docstring).
        self._seq = 0
        if resume is not None:
            # Stores written before ``seq`` and the refreshes were kept hold three or four fields.
            gate, state, touched, *rest = resume
            self._seq = rest[0] if rest else 0
            self._listed = _moment(rest[1]) if len(rest) > 1 else None
            self.gate = UserGate.restore(gate)
            self.state = None if state is None else UserState.restore(state)
            self._touched = _moment(touched)

    def on_batch(self, values: list[list[Admitted]]) -> tuple[Iterable[UserOutput], bool]:
        if not self._replica and values:
            self._replica = replica_of(values[0][0].event.user_id, self._replicas)
        out = UserOutput(self._replica)
        received = time.time()
        offer, settings = self.gate.offer, self._settings
        for admitted in chain.from_iterable(values):
            for result in offer(admitted.event, settings):
                if type(result) is Dropped:
                    out.dead.append(DeadLetter(result.reason, admitted.origin, admitted.raw))
                    continue
                self._seq = seq = max(self._seq, admitted.seq)
                if type(result) is Learn:
                    self._learn(seq, result, out, received)
                else:
                    self._process(seq, result, out, received)
        if self._timers.any:
            self._touched = _now()
            self._listed = None
        return [out], self._is_empty()

    def _learn(self, seq: int, result: Learn, out: UserOutput, received: float) -> None:
        """Add the messages of an accepted event to ``out``; ``received``: when it reached this
        step."""
        event = result.event
        state = self.state
        if state is None:
            warm = self._warm.get(event.user_id) if self._warm else None
            state = UserState(event.user_id) if warm is None else UserState.restore(warm)
            self.state = state
            self._warm = None
            out.users += 1
        messages = state.on_event(event, self._engine, train=result.train, serve=result.serve)
        if result.serve:
            cast(Serve, messages[-1]).received_s = received
        out.messages += zip(repeat(seq), messages)
        out.processed += 1
        out.late += result.late

    def _process(
        self,
        seq: int,
        result: Close | Forget,
        out: UserOutput,
        received: float | None = None,
    ) -> None:
        """Add what a window closing or a ``forget_user`` sends on to ``out``; ``received``: when
        the event that caused it reached this step (None for a timer or the input's end)."""
        if isinstance(result, Forget):
            if self.state is not None:
                out.users -= 1
            self.state = None
            self._warm = None
            event = result.event
            out.messages.append((seq, ForgetUser(event.user_id, event.ts)))
            out.processed += 1
            return
        if self.state is None:
            raise RuntimeError("a window closed that no event opened")
        serve = self.state.serve(self._engine)
        serve.received_s = received
        out.messages.append((seq, serve))

    def _is_empty(self) -> bool:
        return self.state is None and self.gate.is_empty

    def on_notify(self) -> tuple[Iterable[UserOutput], bool]:
        now = _now()
        expiry = _after(self._touched, self._timers.user_expire)
        closing = self._closing_at()
        guard = _after(self._touched, self._timers.forget_guard)
        refresh = self._refresh_at()
        out = UserOutput(self._replica)
        expired = expiry is not None and expiry <= now
        # Lists are sent right after the user's last event in input order.
        windows: list[Close] = []
        if expired or (closing is not None and closing <= now):
            windows = self.gate.flush()
        elif refresh is not None and refresh <= now:
            # A window still open (no close_after_idle) closes with the refresh.
            windows = self.gate.flush() or [Close()]
        for window in windows:
            self._process(self._seq, window, out)
        if windows:
            self._listed = now
        if expired and self.state is not None:
            out.messages.append((self._seq, ForgetUser(self.state.user_id, self.state.last_ts)))
            out.users -= 1
        if guard is not None and guard <= now:
            self.gate.end_forget_guard()
        return [out] if out.messages else [], self._is_empty() or expired

    def on_eof(self) -> tuple[Iterable[UserOutput], bool]:
        out = UserOutput(self._replica)
        for window in self.gate.flush():
            self._process(EOF_SEQ, window, out)
        self.gate.end_forget_guard()
        return [out] if out.messages else [], self._is_empty()

    def notify_at(self) -> datetime | None:
        if self._touched is None:
            return None  # every timer counts from the last event: none runs (a replay)
        guard = None
        if self.gate.guards_forget:
            guard = _after(self._touched, self._timers.forget_guard)
        expiry = _after(self._touched, self._timers.user_expire)
        return _soonest(self._closing_at(), guard, expiry, self._refresh_at())

    def _closing_at(self) -> datetime | None:
        """When the open window closes (None: none is open)."""
        if not self.gate.has_open_window:
            return None
        return _after(self._touched, self._timers.close_after_idle)

    def _refresh_at(self) -> datetime | None:
        """When the idle user's list is next served again (None: never, as they have no
        state)."""
        first, touched = self._timers.refresh, self._touched
        if first is None or touched is None or self.state is None:
            return None
        idle = timedelta(0) if self._listed is None else self._listed - touched
        return touched + next_refresh(idle, first)

    def snapshot(self) -> UserLogicSnapshot:
        state = None if self.state is None else self.state.snapshot()
        return self.gate.snapshot(), state, _posix(self._touched), self._seq, _posix(self._listed)


#: A replica step's snapshot: its replica's, plus the messages it holds (:class:`InputOrder`).
ReplicaLogicSnapshot = tuple[ItemModelSnapshot, RankerSnapshot, list[Sequenced[ReplicaMessage]]]


class ReplicaLogic(
    StatefulBatchLogic[Packet, Sequenced[Output | QualityRecord], ReplicaLogicSnapshot]
):
    """One model replica: applies its messages in input order (holding them until every worker
    of ``sources`` has sent all before them, see :class:`InputOrder`) and emits the lists it
    serves, and every ``quality.every_events`` events a
    :class:`~operators.quality.QualityRecord`. It times its work into
    :data:`dataflows.metrics.TIMINGS`."""

    def __init__(
        self,
        engine: EngineConfig,
        resume: ReplicaLogicSnapshot | ReplicaSnapshot | ModelReplica | None,
        quality: QualityConfig | None = None,
        sources: list[str] | None = None,
    ) -> None:
        quality = quality or QualityConfig()
        self.order = InputOrder(sources)
        if isinstance(resume, ModelReplica):
            self.replica = resume
        elif resume is None:
            self.replica = ModelReplica(engine, quality.window_targets)
        else:
            # Stores written before messages were held hold the replica's snapshot alone.
            items, ranker, *held = resume
            self.replica = ModelReplica.restore((items, ranker), engine, quality.window_targets)
            if held:
                self.order.hold(held[0])
        self._every = quality.every_events
        #: Events since this logic started (records count from a restart).
        self._events = 0
        self._next_record = self._record_after(0)
        REPLICAS.watch(self.replica)

    def on_batch(
        self, values: list[Packet]
    ) -> tuple[Iterable[Sequenced[Output | QualityRecord]], bool]:
        return self._apply(self.order.release(values)), False

    def on_eof(self) -> tuple[Iterable[Sequenced[Output | QualityRecord]], bool]:
        return self._apply(self.order.flush()), False

    def _apply(
        self, messages: list[Sequenced[ReplicaMessage]]
    ) -> list[Sequenced[Output | QualityRecord]]:
        on_message = self.replica.on_message
        out: list[Sequenced[Output | QualityRecord]] = []
        # An event's Train or Label comes before its Observation: one update time for both.
        learning = 0.0
        for seq, message in messages:
            started = perf_counter()
            ranked = on_message(message)
            elapsed = perf_counter() - started
            kind = type(message)
            if ranked is not None:
                if kind is Serve:
                    TIMINGS.served(elapsed, cast(Serve, message).received_s)
                out.append((seq, Output.of(ranked)))
                continue
            if kind is Observation:
                TIMINGS.updated(learning + elapsed)
                learning, events, ts = 0.0, 1, cast(Observation, message).ts
            elif kind is ObservationBlock:  # other workers' events: not timed
                block = cast(ObservationBlock, message)
                events, ts = len(block), block.ts[-1]
            else:
                learning += elapsed
                continue
            # A quality record each time the count of events learned passes a multiple.
            self._events += events
            if self._events >= self._next_record:
                out.append((seq, self.replica.quality_record(self._events, ts)))
                self._next_record = self._record_after(self._events)
        return out

    def _record_after(self, events: int) -> float:
        """The count of events at which the next quality record is due."""
        every = self._every
        return math.inf if every is None else (events // every + 1) * every

    def snapshot(self) -> ReplicaLogicSnapshot:
        items, ranker = self.replica.snapshot()
        return items, ranker, self.order.held
