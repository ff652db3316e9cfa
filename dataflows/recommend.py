"""The streamrec dataflow: events in, one fresh list per user window out, learning as it goes.

Run it live with ``python -m bytewax.run dataflows.recommend:flow`` (the config file is named by
``$STREAMREC_CONFIG``, default ``deploy/config.yaml``; ``streamrec run`` wraps this), or over a
recorded file with ``streamrec replay``. Tests and tools call :func:`build_flow`.

Steps (the model state is partitioned exactly as in the sequential ``operators.engine.Engine``)::

    input (Kafka | JSON Lines) -> admit (parse, validate) -------------------> dead letter
      -> key by user -> user step [UserGate + UserState] ---------------------> dead letter
           |-- ItemMessage  -> key by item  -> item step [ItemState]  --.
           |-- TrendMessage -> TREND_KEY    -> trend step [TrendState] --+-> rank step -> output
           '-- RankHeader / ForgetUser ---------------------------------'   (by rank shard)

Every message carries ``seq``, the input position of the event that caused it. Bytewax hands a
stateful step each batch grouped by key in key order; the item, trend and rank steps sort each
batch by ``seq`` again, so every state sees its messages in stream order and a one-worker run
computes exactly what the sequential engine computes. Each step also counts what it handles into
one :class:`~operators.tally.Tally` (events in, processed, dead-lettered, late, lists out).

Processing-time timers (``window.close_after_idle_s``, ``state.*_idle_expire_s``) exist only in
the live job; a replay leaves them off, so its output depends on the events alone.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from operator import itemgetter
from pathlib import Path
from typing import Any, TypeVar, cast

import bytewax.operators as op
import orjson
from bytewax.connectors.kafka import KafkaError, KafkaSinkMessage, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import KeyedStream, StatefulBatchLogic
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from dataflows.connectors import JsonLinesSink, JsonLinesSource, TallySink
from operators.config import Config, FileEndpoint, KafkaInput, KafkaTopic, load_config
from operators.engine_config import EngineConfig
from operators.intake import Admitted, DeadLetter, Origin, Raw, admit
from operators.item_state import ItemSnapshot, ItemState
from operators.messages import (
    TREND_KEY,
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
from operators.tally import Tally
from operators.trend import TrendSnapshot, TrendState
from operators.user_state import UserSnapshot, UserState, UserStep, forget_user
from operators.windows import Dropped, Forget, GateSettings, GateSnapshot, UserGate, Window

#: The environment variable naming the config file of ``dataflows.recommend:flow``.
CONFIG_ENV = "STREAMREC_CONFIG"
DEFAULT_CONFIG = "deploy/config.yaml"

#: ``seq`` of windows closed at the end of the input: after every input position. Bytewax closes
#: them in user-key order, which the stable sorts downstream keep.
EOF_SEQ = 1 << 62

M = TypeVar("M")
#: A message with the input position of the event that caused it.
Sequenced = tuple[int, M]


@dataclass(frozen=True, slots=True)
class UserOutput:
    """What one closed window (or a ``forget_user``) of a user sends on."""

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

    def _process(self, seq: int, result: Window | Forget) -> UserOutput:
        if isinstance(result, Forget):
            self.state = None
            return UserOutput(seq, None, forget_user(result.event, self._engine), 1, 0)
        if self.state is None:
            self.state = UserState()
        step = self.state.on_events(result.events, self._engine)
        return UserOutput(seq, step, None, len(result.events), result.late)

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
        values.sort(key=itemgetter(0))
        out = []
        for seq, message in values:
            part = self.state.on_message(message, self._engine)
            if part is not None:
                out.append((seq, part))
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
        values.sort(key=itemgetter(0))
        out = []
        for seq, message in values:
            part = self.state.on_message(message, self._engine)
            if part is not None:
                out.append((seq, part))
        return out, False

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
Ranked = Recommendation | Tombstone

#: (rank state, requests and forgets in header order, the replies gathered so far).
RankLogicSnapshot = tuple[
    dict[str, object],
    tuple[Sequenced[RequestId | ForgetUser], ...],
    tuple[tuple[GatherKey, RankHeader | None, tuple[RankPart, ...]], ...],
]


class RankLogic(StatefulBatchLogic[Sequenced["RankInput"], Sequenced[Ranked], RankLogicSnapshot]):
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
                out.append((seq, ranked.recommendation))
            queue.popleft()
        return out

    def snapshot(self) -> RankLogicSnapshot:
        gathers = tuple(
            (key, gather.header, tuple(gather.parts)) for key, gather in self._gathers.items()
        )
        return self.state.snapshot(), tuple(self._queue), gathers


def _item_messages(keyed: tuple[str, UserOutput]) -> list[tuple[str, Sequenced[ItemMessage]]]:
    output = keyed[1]
    if output.step is None:
        return []
    return [(message.item_id, (output.seq, message)) for message in output.step.items]


def _trend_message(keyed: tuple[str, UserOutput]) -> list[tuple[str, Sequenced[TrendMessage]]]:
    output = keyed[1]
    if output.step is None:
        return []
    return [(TREND_KEY, (output.seq, output.step.trend))]


RankInput = RankHeader | RankPart | ForgetUser


def _rank_message(keyed: tuple[str, UserOutput]) -> tuple[str, Sequenced[RankInput]]:
    output = keyed[1]
    step, forget = output.step, output.forget
    message = step.header if step is not None else cast(ForgetUser, forget)
    return str(message.shard), (output.seq, message)


def _to_shard(keyed: tuple[str, Sequenced[RankPart]]) -> tuple[str, Sequenced[RankInput]]:
    seq, part = keyed[1]
    return str(part.shard), (seq, part)


def _count_user_outputs(batch: list[tuple[str, UserOutput | DeadLetter]]) -> list[Tally]:
    processed = late = 0
    for _user, output in batch:
        if isinstance(output, UserOutput):
            processed += output.processed
            late += output.late
    return [Tally(processed=processed, late=late)]


def _count(field_name: str, batch: list[Any]) -> list[Tally]:
    return [Tally(**{field_name: len(batch)})]


def _in_input_order(batch: list[tuple[str, Sequenced[Ranked]]]) -> list[tuple[str, Ranked]]:
    """The outputs of one activation by input position, keyed by user (the shards release
    their lists one shard after the other)."""
    batch.sort(key=lambda keyed: keyed[1][0])
    return [(output.user_id, output) for _shard, (_seq, output) in batch]


def _count_outputs(batch: list[tuple[str, Ranked]]) -> list[Tally]:
    tombstones = sum(isinstance(value, Tombstone) for _key, value in batch)
    return [Tally(lists_out=len(batch) - tombstones, tombstones=tombstones)]


def file_line(output: Ranked) -> bytes:
    """The JSON Lines form of one output; a forgotten user is ``{"user_id", "tombstone": true,
    "as_of"}`` (Kafka has a null value under the user's key instead)."""
    if isinstance(output, Tombstone):
        return orjson.dumps({"user_id": output.user_id, "tombstone": True, "as_of": output.as_of})
    return output.to_json()


def kafka_message(output: Ranked) -> KafkaSinkMessage[bytes, bytes | None]:
    """Key = user_id; value = the list's JSON, or null for a forgotten user (compaction)."""
    value = None if isinstance(output, Tombstone) else output.to_json()
    return KafkaSinkMessage(output.user_id.encode(), value)


def _kafka_raw(message: KafkaSourceMessage[bytes | None, bytes | None]) -> Raw:
    origin = Origin(cast(str, message.topic), cast(int, message.offset), message.partition)
    return Raw(cast(int, message.offset), origin, message.value)


def _kafka_dead(error: KafkaError[bytes | None, bytes | None]) -> DeadLetter:
    message = error.msg
    origin = Origin(message.topic or "", message.offset or -1, message.partition)
    return DeadLetter(f"Kafka error: {error.err.str()}", origin, message.value)


def _input(flow: Dataflow, config: Config) -> tuple[Stream[Raw], Stream[DeadLetter] | None]:
    """The raw input, and the consumer errors of a Kafka input as dead letters."""
    source = config.input
    if isinstance(source, FileEndpoint):
        return op.input("input", flow, JsonLinesSource(Path(source.path))), None
    assert isinstance(source, KafkaInput)
    kafka = kop.input(
        "input",
        flow,
        brokers=list(config.kafka.brokers),
        topics=[source.topic],
        tail=source.tail,
        starting_offset=OFFSET_BEGINNING if source.starting_offset == "earliest" else OFFSET_END,
        add_config=config.kafka.client_config(),
        batch_size=source.batch_size,
    )
    return op.map("kafka_raw", kafka.oks, _kafka_raw), op.map("kafka_dead", kafka.errs, _kafka_dead)


def _write(
    step_id: str,
    stream: KeyedStream[Any],
    endpoint: KafkaTopic | FileEndpoint | None,
    config: Config,
    to_kafka: Callable[[Any], KafkaSinkMessage[bytes | None, bytes | None]],
    to_line: Callable[[Any], bytes],
) -> None:
    if endpoint is None:
        return
    if isinstance(endpoint, FileEndpoint):
        lines = op.map_value(f"{step_id}_lines", stream, to_line)
        op.output(step_id, lines, JsonLinesSink(Path(endpoint.path)))
        return
    messages = op.map(f"{step_id}_messages", stream, lambda keyed: to_kafka(keyed[1]))
    kop.output(
        step_id,
        messages,
        brokers=list(config.kafka.brokers),
        topic=endpoint.topic,
        add_config=config.kafka.client_config(),
    )


def _dead_letter_message(letter: DeadLetter) -> KafkaSinkMessage[bytes | None, bytes | None]:
    return KafkaSinkMessage(None, letter.to_json())


def build_flow(config: Config, report: Callable[[Tally], None] | None = None) -> Dataflow:
    """The whole job for ``config``; ``report`` sees each new running :class:`Tally`."""
    flow = Dataflow("streamrec")
    engine = config.engine
    timers = Timers.from_config(config)
    gate_settings = config.gate_settings()

    raw, input_errors = _input(flow, config)
    arrivals: list[Stream[Any]] = [raw] if input_errors is None else [raw, input_errors]
    tallies = [
        op.flat_map_batch(f"count_in_{number}", stream, partial(_count, "events_in"))
        for number, stream in enumerate(arrivals)
    ]
    admitted = op.map(
        "admit",
        raw,
        partial(
            admit,
            known_types=config.known_types(),
            max_bytes=config.limits.max_message_bytes,
        ),
    )
    valid = op.branch("valid", admitted, lambda x: isinstance(x, Admitted))
    by_user = op.key_on("by_user", cast(Stream[Admitted], valid.trues), lambda a: a.event.user_id)
    user_out = op.stateful_batch(
        "user", by_user, lambda resume: UserLogic(engine, gate_settings, timers, resume)
    )
    user_split = op.branch("user_split", user_out, lambda kv: isinstance(kv[1], UserOutput))
    outputs = cast(KeyedStream[UserOutput], user_split.trues)
    tallies.append(op.flat_map_batch("count_user", user_out, _count_user_outputs))

    items = op.flat_map("to_items", outputs, _item_messages)
    item_parts = op.stateful_batch(
        "item", items, lambda resume: ItemLogic(engine, timers.item_expire, resume)
    )
    trend = op.flat_map("to_trend", outputs, _trend_message)
    trend_parts = op.stateful_batch("trend", trend, lambda resume: TrendLogic(engine, resume))
    rank_in = op.merge(
        "rank_in",
        op.map("headers", outputs, _rank_message),
        op.map("item_parts", item_parts, _to_shard),
        op.map("trend_parts", trend_parts, _to_shard),
    )
    ranked = op.flat_map_batch(
        "in_input_order",
        op.stateful_batch("rank", rank_in, lambda resume: RankLogic(engine, resume)),
        _in_input_order,
    )
    tallies.append(op.flat_map_batch("count_out", ranked, _count_outputs))
    _write("output", ranked, config.output, config, kafka_message, file_line)

    dead: list[Stream[DeadLetter]] = [
        op.map("user_dead", cast(Stream[Any], user_split.falses), itemgetter(1)),
        cast(Stream[DeadLetter], valid.falses),
    ]
    if input_errors is not None:
        dead.append(input_errors)
    dead_letters = op.merge("dead", *dead)
    tallies.append(op.flat_map_batch("count_dead", dead_letters, partial(_count, "dead_lettered")))
    keyed_dead = op.key_on("dead_key", dead_letters, lambda _letter: "dead")
    _write(
        "dead_letter",
        keyed_dead,
        config.dead_letter,
        config,
        _dead_letter_message,
        DeadLetter.to_json,
    )

    total = op.key_on("tally_key", op.merge("tallies", *tallies), lambda _tally: "tally")
    op.output("accounting", total, TallySink(report or (lambda _tally: None)))
    return flow


def __getattr__(name: str) -> Dataflow:
    """``flow`` is built on first access, so importing this module has no side effects."""
    if name == "flow":
        return build_flow(load_config(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG)))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
