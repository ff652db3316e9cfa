"""The dataflow's keyed steps: Bytewax ``StatefulBatchLogic`` shells around the engine's states.

Each logic holds one key's state from ``operators`` and adds only what the runtime needs:

* input order: every message is ``(seq, message)`` with ``seq`` the input position of the event
  that caused it. Bytewax hands a step each batch grouped by key in key order, so the item,
  trend and rank steps sort each batch by ``seq`` (stably) before applying it; the rank step
  also answers requests strictly in the order of their headers. With one worker every state
  therefore sees exactly the sequence the sequential ``operators.engine.Engine`` gives it.
* compact snapshots (the engine states' own, plus the gate's and the pending gathers);
* processing-time timers of the live job (:class:`Timers`): a user's open window closes after
  ``close_after_idle``, idle users and items are dropped. Replays run without them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import itemgetter
from typing import TypeVar, cast

from bytewax.operators import StatefulBatchLogic

from operators.config import Config
from operators.engine_config import EngineConfig
from operators.intake import Admitted, DeadLetter
from operators.item_state import ItemSnapshot, ItemState
from operators.messages import (
    ForgetUser,
    ItemMessage,
    RankHeader,
    RankPart,
    Recommendation,
    RequestId,
    Tombstone,
    TrendMessage,
)
from operators.ranking import RankState
from operators.trend import TrendSnapshot, TrendState
from operators.user_state import UserSnapshot, UserState, UserStep, forget_user
from operators.windows import Dropped, Forget, GateSettings, GateSnapshot, Learn, Serve, UserGate

#: ``seq`` of windows closed at the end of the input or by a timer: after every input position.
#: Bytewax closes them in user-key order, which the stable sorts downstream keep.
EOF_SEQ = 1 << 62

M = TypeVar("M")
#: A message with the input position of the event that caused it.
Sequenced = tuple[int, M]
#: What the rank step receives.
RankInput = RankHeader | RankPart | ForgetUser
#: What the rank step emits.
Ranked = Recommendation | Tombstone


@dataclass(frozen=True, slots=True)
class UserOutput:
    """What one event, closed window or ``forget_user`` of a user sends on."""

    seq: int
    step: UserStep | None
    forget: ForgetUser | None
    processed: int
    late: int


@dataclass(frozen=True, slots=True)
class Timers:
    """Processing-time timers of the live job (None: off)."""

    close_after_idle: timedelta | None
    user_expire: timedelta | None
    item_expire: timedelta | None

    @classmethod
    def from_config(cls, config: Config) -> Timers:
        def span(seconds: float | None) -> timedelta | None:
            return None if seconds is None else timedelta(seconds=seconds)

        return cls(
            span(config.window.close_after_idle_s),
            span(config.state.user_idle_expire_s),
            span(config.state.item_idle_expire_s),
        )


def _answer_in_input_order(
    values: list[Sequenced[M]],
    answer: Callable[[M, EngineConfig], RankPart | None],
    engine: EngineConfig,
) -> list[Sequenced[RankPart]]:
    """Apply ``answer`` to a batch in input order (Bytewax hands it over grouped by key)."""
    values.sort(key=itemgetter(0))
    return [(seq, part) for seq, message in values if (part := answer(message, engine)) is not None]


def _now() -> datetime:
    return datetime.now(UTC)


def _soonest(*moments: datetime | None) -> datetime | None:
    return min((moment for moment in moments if moment is not None), default=None)


def _after(start: datetime | None, span: timedelta | None) -> datetime | None:
    return None if start is None or span is None else start + span


#: (gate, user state or None, processing time of the last event as a POSIX timestamp or None).
UserLogicSnapshot = tuple[GateSnapshot, UserSnapshot | None, float | None]


class UserLogic(StatefulBatchLogic[Admitted, "UserOutput | DeadLetter", UserLogicSnapshot]):
    """The user step: the gate, then the user's state for each closed window."""

    def __init__(
        self,
        engine: EngineConfig,
        gate_settings: GateSettings,
        timers: Timers,
        resume: UserLogicSnapshot | None,
    ) -> None:
        self._engine = engine
        self._settings = gate_settings
        self._timers = timers
        self.gate = UserGate()
        self.state: UserState | None = None
        self._touched: datetime | None = None
        if resume is not None:
            gate, state, touched = resume
            self.gate = UserGate.restore(gate)
            self.state = None if state is None else UserState.restore(state)
            self._touched = None if touched is None else datetime.fromtimestamp(touched, UTC)

    def on_batch(self, values: list[Admitted]) -> tuple[Iterable[UserOutput | DeadLetter], bool]:
        out: list[UserOutput | DeadLetter] = []
        for admitted in values:
            for result in self.gate.offer(admitted.event, self._settings):
                if isinstance(result, Dropped):
                    out.append(DeadLetter(result.reason, admitted.origin, admitted.raw))
                else:
                    out.append(self._process(admitted.seq, result))
        if self._timers.close_after_idle is not None or self._timers.user_expire is not None:
            self._touched = _now()
        return out, self._is_empty()

    def _process(self, seq: int, result: Learn | Serve | Forget) -> UserOutput:
        if isinstance(result, Forget):
            self.state = None
            return UserOutput(seq, None, forget_user(result.event, self._engine), 1, 0)
        if isinstance(result, Serve):
            assert self.state is not None, "a window closes only after an event opened it"
            return UserOutput(seq, self.state.serve(self._engine), None, 0, 0)
        event = result.event
        if self.state is None:
            self.state = UserState(event.user_id)
        step = self.state.on_event(event, self._engine, train=result.train, serve=result.serve)
        return UserOutput(seq, step, None, 1, int(result.late))

    def _is_empty(self) -> bool:
        return self.state is None and self.gate.is_empty

    def on_notify(self) -> tuple[Iterable[UserOutput], bool]:
        now = _now()
        expiry = _after(self._touched, self._timers.user_expire)
        closing = _after(self._touched, self._timers.close_after_idle)
        out = []
        if (expiry is not None and expiry <= now) or (closing is not None and closing <= now):
            out = [self._process(EOF_SEQ, window) for window in self.gate.flush()]
        discard = self._is_empty() or (expiry is not None and expiry <= now)
        return out, discard

    def on_eof(self) -> tuple[Iterable[UserOutput], bool]:
        return [self._process(EOF_SEQ, window) for window in self.gate.flush()], self._is_empty()

    def notify_at(self) -> datetime | None:
        closing = None
        if self.gate.has_open_window:
            closing = _after(self._touched, self._timers.close_after_idle)
        return _soonest(closing, _after(self._touched, self._timers.user_expire))

    def snapshot(self) -> UserLogicSnapshot:
        touched = None if self._touched is None else self._touched.timestamp()
        state = None if self.state is None else self.state.snapshot()
        return self.gate.snapshot(), state, touched


#: (item state, processing time of its last message as a POSIX timestamp or None).
ItemLogicSnapshot = tuple[ItemSnapshot, float | None]


class ItemLogic(StatefulBatchLogic[Sequenced[ItemMessage], Sequenced[RankPart], ItemLogicSnapshot]):
    """The item step: replies to requests, then learns, in input order."""

    def __init__(
        self, engine: EngineConfig, expire: timedelta | None, resume: ItemLogicSnapshot | None
    ) -> None:
        self._engine = engine
        self._expire = expire
        self.state = ItemState() if resume is None else ItemState.restore(resume[0])
        self._touched = None
        if resume is not None and resume[1] is not None:
            self._touched = datetime.fromtimestamp(resume[1], UTC)

    def on_batch(
        self, values: list[Sequenced[ItemMessage]]
    ) -> tuple[Iterable[Sequenced[RankPart]], bool]:
        out = _answer_in_input_order(values, self.state.on_message, self._engine)
        if self._expire is not None:
            self._touched = _now()
        return out, False

    def on_notify(self) -> tuple[Iterable[Sequenced[RankPart]], bool]:
        return [], True

    def notify_at(self) -> datetime | None:
        return _after(self._touched, self._expire)

    def snapshot(self) -> ItemLogicSnapshot:
        touched = None if self._touched is None else self._touched.timestamp()
        return self.state.snapshot(), touched


class TrendLogic(StatefulBatchLogic[Sequenced[TrendMessage], Sequenced[RankPart], TrendSnapshot]):
    """The trend step (one key): replies with the trending items, then learns, in input order."""

    def __init__(self, engine: EngineConfig, resume: TrendSnapshot | None) -> None:
        self._engine = engine
        self.state = TrendState() if resume is None else TrendState.restore(resume)

    def on_batch(
        self, values: list[Sequenced[TrendMessage]]
    ) -> tuple[Iterable[Sequenced[RankPart]], bool]:
        return _answer_in_input_order(values, self.state.on_message, self._engine), False

    def snapshot(self) -> TrendSnapshot:
        return self.state.snapshot()


@dataclass(slots=True)
class _Gather:
    header: RankHeader | None = None
    parts: list[RankPart] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.header is not None and len(self.parts) == self.header.parts


#: A gather: the request with the ``seq`` of its window (a forgotten user's versions restart,
#: so the request id alone may repeat).
GatherKey = tuple[int, RequestId]

#: (rank state, requests and forgets in header order, the replies gathered so far).
RankLogicSnapshot = tuple[
    dict[str, object],
    tuple[Sequenced[RequestId | ForgetUser], ...],
    tuple[tuple[GatherKey, RankHeader | None, tuple[RankPart, ...]], ...],
]


class RankLogic(StatefulBatchLogic[Sequenced[RankInput], Sequenced[Ranked], RankLogicSnapshot]):
    """The rank step of one shard: gathers each request's header and replies, and ranks the
    requests strictly in the order of their headers.

    Replies travel by different paths (items, trend), so requests complete out of order; the
    ranker learns from every request it ranks, so ranking in completion order would make the
    model depend on timing. A ``forget_user`` takes its place in the same queue, so its
    tombstone never overtakes a list of the same user.
    """

    def __init__(self, engine: EngineConfig, resume: RankLogicSnapshot | None) -> None:
        self._engine = engine
        self.state = RankState(engine)
        self._queue: deque[Sequenced[RequestId | ForgetUser]] = deque()
        self._gathers: dict[GatherKey, _Gather] = {}
        if resume is not None:
            state, queue, gathers = resume
            self.state = RankState.restore(state, engine)
            self._queue.extend(queue)
            for key, header, parts in gathers:
                self._gathers[key] = _Gather(header, list(parts))

    def on_batch(
        self, values: list[Sequenced[RankInput]]
    ) -> tuple[Iterable[Sequenced[Ranked]], bool]:
        values.sort(key=itemgetter(0))
        for seq, message in values:
            if isinstance(message, ForgetUser):
                self._queue.append((seq, message))
                continue
            key = (seq, message.request)
            gather = self._gathers.get(key)
            if gather is None:
                gather = self._gathers[key] = _Gather()
            if isinstance(message, RankHeader):
                gather.header = message
                self._queue.append(key)
            else:
                gather.parts.append(message)
        return self._release(), False

    def on_eof(self) -> tuple[Iterable[Sequenced[Ranked]], bool]:
        if self._queue:
            # Every request gets all its replies before the end of the input; a request still
            # waiting is a bug that would otherwise silently hold back the whole shard.
            raise RuntimeError(f"rank step: {len(self._queue)} requests never completed")
        return [], False

    def _release(self) -> list[Sequenced[Ranked]]:
        out: list[Sequenced[Ranked]] = []
        queue = self._queue
        while queue:
            seq, head = queue[0]
            if isinstance(head, ForgetUser):
                out.append((seq, cast(Tombstone, self.state.on_message(head, self._engine))))
            else:
                gather = self._gathers[(seq, head)]
                if not gather.complete:
                    break
                del self._gathers[(seq, head)]
                header = cast(RankHeader, gather.header)
                ranked = self.state.rank(header, gather.parts, self._engine)
                if ranked is not None:
                    out.append((seq, ranked.recommendation))
            queue.popleft()
        return out

    def snapshot(self) -> RankLogicSnapshot:
        gathers = tuple(
            (key, gather.header, tuple(gather.parts)) for key, gather in self._gathers.items()
        )
        return self.state.snapshot(), tuple(self._queue), gathers
