"""The streamrec dataflow: events in, one fresh list per user window out, learning as it goes.

Run it live with ``python -m bytewax.run dataflows.recommend:flow`` (the config file is named by
``$STREAMREC_CONFIG``, default ``deploy/config.yaml``; ``streamrec run`` wraps this), or over a
recorded file with ``streamrec replay``. Tests and tools call :func:`build_flow`.

Steps::

    input (Kafka | JSON Lines) -> admit a batch (parse, validate) -----------> dead letter
      '-> offsets read (Kafka) -> committed to kafka.group_id at each epoch's end
      -> one packet per worker {user: events} -> unpack by user
      -> user step [UserGate + UserState] -> dead letter
           |-- Observation -> every replica key -----------.
           '-- Train / Label / Serve / ForgetUser ----------+-> replica step [ModelReplica]
               -> the user's replica key ------------------'   (one key per worker) -> output

Item knowledge is replicated: each worker holds one :class:`~operators.replica.ModelReplica`
(``dataflows.routing`` picks one key per worker) that learns every event's observation and
serves the users whose keys live on its worker, so a user's own messages never leave its worker
and a list reads only local state. What crosses between workers is packed: each activation's
admitted events go to the users' workers as one packet per worker, each user's events together
(a file input is read by one partition per worker that keeps its own users' lines, so nothing
crosses there), and its observations go to every other replica as one
:class:`~operators.messages.ObservationBlock` (columns). A worker thus pickles a few objects per
batch instead of one per event, and the steps from input to user state handle a few items per
batch: the user step takes each user's events of a batch as one item.
Every message carries ``seq``, the input position of the event that caused it, and the replica
step applies each batch in that order: a one-worker run computes exactly what the sequential
engine computes, and the lists leave in input order. With a file input and several workers a
replica also holds each message until every worker has sent all before it
(:class:`~dataflows.steps.InputOrder`), so each replica learns the other workers' events at
their places in the file, however far apart the workers run within an epoch. Each step also
counts what it handles into one :class:`~operators.tally.Tally` (events in, processed,
dead-lettered, late, lists out), summed by the accounting sink.

Processing-time timers (``window.close_after_idle_s``, ``state.*_idle_expire_s``,
``privacy.forget_guard_s``) exist only in the live job; a replay leaves them off, so its output
depends on the events alone. With ``privacy.pseudonymise_users`` the admit step replaces each
user id by its pseudonym (:mod:`operators.privacy`), so every later step, the output keys and
the dead letters see only the pseudonym.
"""

from __future__ import annotations

import gc
import os
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import bytewax.operators as op
from bytewax.connectors.kafka import KafkaError, KafkaSinkMessage, KafkaSourceMessage
from bytewax.connectors.kafka import operators as kop
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import KeyedStream
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END

from dataflows.connectors import (
    JsonLinesSink,
    JsonLinesSource,
    OffsetCommitSink,
    TallySink,
    next_offsets,
)
from dataflows.routing import replica_keys, replica_of
from dataflows.steps import (
    Output,
    Packet,
    ReplicaLogic,
    ReplicaLogicSnapshot,
    Sequenced,
    Timers,
    UserLogic,
    UserOutput,
)
from operators.config import Config, FileEndpoint, KafkaInput, KafkaTopic, load_config
from operators.intake import Admitted, DeadLetter, Origin, Raw, admit
from operators.item_model import Observation
from operators.messages import ObservationBlock, ReplicaMessage
from operators.quality import QualityRecord
from operators.tally import Tally
from operators.warm_start import WarmStart

#: The environment variables ``dataflows.recommend:flow`` is built from: the config file, the
#: cluster's worker count in all, and a warm-start directory.
CONFIG_ENV = "STREAMREC_CONFIG"
WORKERS_ENV = "STREAMREC_WORKERS"
WARM_START_ENV = "STREAMREC_WARM_START"
DEFAULT_CONFIG = "deploy/config.yaml"
#: The cyclic garbage collector's thresholds while the job runs (live or replay): it allocates
#: millions of short-lived objects and few cycles, and with the default thresholds the collector
#: took about a third of a replay.
COLLECTOR_THRESHOLDS = (200_000, 20, 100)


def _to_replicas(keys: list[str], batch: list[tuple[str, UserOutput]]) -> list[tuple[str, Packet]]:
    """One packet per replica for the whole batch of one worker's user step (its users' replica
    is the worker's own, the packets' ``source``): each user's messages go to the user's own
    replica as they are, and every other replica gets the batch's observations as one
    :class:`~operators.messages.ObservationBlock`, at the input position of the last of them
    (it is learned after the replica's own messages of earlier positions). A worker thus
    pickles one block per activation for each other worker, not an object per event. Each
    packet says how far the batch went (see :class:`~dataflows.steps.InputOrder`), so with
    several replicas every one gets a packet, with no message if need be."""
    source = batch[0][1].replica
    messages: dict[str, list[Sequenced[ReplicaMessage]]] = {key: [] for key in keys}
    observations: list[Sequenced[Observation]] = []
    through = -1
    for _user, output in batch:
        messages[output.replica] += output.messages
        if output.messages:  # in order: a user's seq never goes down
            through = max(through, output.messages[-1][0])
        if len(keys) > 1:
            observations += (entry for entry in output.messages if type(entry[1]) is Observation)
    if observations:
        block = ObservationBlock.of([observation for _seq, observation in observations])
        for key, packet in messages.items():
            if key != source:
                packet.append((observations[-1][0], block))
    return [
        (key, Packet(source, through, packet))
        for key, packet in messages.items()
        if packet or len(keys) > 1
    ]


def _dead_letters(batch: list[tuple[str, UserOutput]]) -> list[DeadLetter]:
    return [letter for _user, output in batch for letter in output.dead]


def _count_user_outputs(batch: list[tuple[str, UserOutput]]) -> list[Tally]:
    processed = late = users = 0
    for _user, output in batch:
        processed += output.processed
        late += output.late
        users += output.users
    return [Tally(processed=processed, late=late, users=users)]


def _count_dead(batch: list[DeadLetter]) -> list[Tally]:
    return [Tally.of_dead_letters(letter.reason for letter in batch)]


def _count(field_name: str, batch: list[Any]) -> list[Tally]:
    return [Tally(**{field_name: len(batch)})]


def _quality_line(keyed: tuple[str, Sequenced[QualityRecord]]) -> tuple[str, bytes]:
    replica, (_seq, record) = keyed
    return replica, record.to_json(replica=replica)


def _unkeyed_message(value: bytes) -> KafkaSinkMessage[bytes | None, bytes | None]:
    return KafkaSinkMessage(None, value)


def _in_input_order(batch: list[tuple[str, Sequenced[Output]]]) -> list[tuple[str, Output]]:
    """The outputs of one activation by input position, keyed by user (the replicas release
    their lists one after the other)."""
    batch.sort(key=lambda keyed: keyed[1][0])
    return [(output.user_id, output) for _shard, (_seq, output) in batch]


def _count_outputs(batch: list[tuple[str, Output]]) -> list[Tally]:
    tombstones = sum(output.tombstone for _key, output in batch)
    return [Tally(lists_out=len(batch) - tombstones, tombstones=tombstones)]


def file_line(output: Output) -> bytes:
    """The JSON Lines form of one output; a forgotten user is ``{"user_id", "tombstone": true,
    "as_of"}`` (Kafka has a null value under the user's key instead)."""
    return output.document


def kafka_message(output: Output) -> KafkaSinkMessage[bytes, bytes | None]:
    """Key = user_id; value = the list's JSON, or null for a forgotten user (compaction)."""
    return KafkaSinkMessage(output.user_id.encode(), None if output.tombstone else output.document)


def _kafka_raw(message: KafkaSourceMessage[bytes | None, bytes | None]) -> Raw:
    origin = Origin(cast(str, message.topic), cast(int, message.offset), message.partition)
    return Raw(cast(int, message.offset), origin, message.value)


def _kafka_dead(error: KafkaError[bytes | None, bytes | None]) -> DeadLetter:
    message = error.msg
    offset = -1 if message.offset is None else message.offset
    origin = Origin(message.topic or "", offset, message.partition)
    return DeadLetter(f"Kafka error: {error.err.str()}", origin, message.value)


def _input(
    flow: Dataflow, config: Config, workers: int
) -> tuple[Stream[Raw], Stream[DeadLetter] | None]:
    """The raw input (a file: one partition per worker), and the consumer errors of a Kafka
    input as dead letters (without their payload when user ids are pseudonymised: it was not
    parsed)."""
    source = config.input
    if not isinstance(source, KafkaInput):
        users = config.pseudonymiser()
        key = str if users is None else users.pseudonym
        lines = JsonLinesSource(Path(source.path), source.batch_size, workers, key)
        return op.input("input", flow, lines), None
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
    raw = op.map("kafka_raw", kafka.oks, _kafka_raw)
    if config.kafka.group_id is not None:
        settings = {
            "bootstrap.servers": ",".join(config.kafka.brokers),
            "group.id": config.kafka.group_id,
            **config.kafka.client_config(),
        }
        offsets = op.flat_map_batch("offsets", raw, next_offsets)
        keyed = op.key_on("offsets_key", offsets, lambda _offsets: "offsets")
        op.output("commit_offsets", keyed, OffsetCommitSink(settings))
    errors = op.map("kafka_dead", kafka.errs, _kafka_dead)
    if config.pseudonymiser() is not None:
        errors = op.map("kafka_dead_withheld", errors, DeadLetter.withheld)
    return raw, errors


#: One worker's share of a batch: each of its users' admitted events, in input order.
UserPacket = dict[str, list[Admitted]]


def _admit(
    check: Callable[[Raw], Admitted | DeadLetter], replicas: list[str], batch: list[Raw]
) -> list[tuple[str, UserPacket] | DeadLetter]:
    """Validate a batch of input (``check``: :func:`~operators.intake.admit`): its dead letters,
    then its admitted events in one packet per worker, keyed by the worker's replica key. One
    pickled packet per worker and activation crosses to the worker holding the users' keys, and
    the steps between take a few items per batch, not one per event."""
    dead: list[tuple[str, UserPacket] | DeadLetter] = []
    packets: dict[str, UserPacket] = {}
    one = replicas[0] if len(replicas) == 1 else None
    for message in batch:
        admitted = check(message)
        if not isinstance(admitted, Admitted):
            dead.append(admitted)
            continue
        user_id = admitted.event.user_id
        replica = one or replica_of(user_id, replicas)
        packet = packets.get(replica)
        if packet is None:
            packet = packets[replica] = {}
        events = packet.get(user_id)
        if events is None:
            packet[user_id] = [admitted]
        else:
            events.append(admitted)
    return dead + list(packets.items())


def _unpack(_state: None, packet: UserPacket) -> tuple[None, list[tuple[str, list[Admitted]]]]:
    return None, list(packet.items())


def _by_user(
    batch: list[tuple[str, tuple[str, list[Admitted]]]],
) -> list[tuple[str, list[Admitted]]]:
    """Drop the worker's key: each user's events keyed by the user (whose key lives on that
    worker)."""
    return [keyed for _worker, keyed in batch]


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


def build_flow(
    config: Config,
    report: Callable[[Tally], None] | None = None,
    workers: int = 1,
    warm: WarmStart | None = None,
) -> Dataflow:
    """The whole job for ``config`` on a cluster of ``workers`` workers in all; ``report`` sees
    each new running :class:`Tally`; ``warm`` is the pretrained state to start from."""
    flow = Dataflow("streamrec")
    engine = config.engine
    timers = Timers.from_config(config)
    gate_settings = config.gate_settings()
    warm_users = None if warm is None else warm.user_snapshots
    replicas = replica_keys(workers)

    # A file's line numbers order the events across workers; Kafka offsets order one partition.
    sources = None if isinstance(config.input, KafkaInput) or len(replicas) == 1 else replicas

    def replica_logic(resume: ReplicaLogicSnapshot | None) -> ReplicaLogic:
        if resume is None and warm is not None:
            return ReplicaLogic(engine, warm.replica(engine), config.quality, sources)
        return ReplicaLogic(engine, resume, config.quality, sources)

    raw, input_errors = _input(flow, config, workers)
    arrivals: list[Stream[Any]] = [raw] if input_errors is None else [raw, input_errors]
    tallies = [
        op.flat_map_batch(f"count_in_{number}", stream, partial(_count, "events_in"))
        for number, stream in enumerate(arrivals)
    ]
    check = partial(
        admit,
        known_types=config.known_types(),
        max_bytes=config.limits.max_message_bytes,
        users=config.pseudonymiser(),
    )
    admitted = op.branch(
        "valid",
        op.flat_map_batch("admit", raw, partial(_admit, check, replicas)),
        lambda routed: not isinstance(routed, DeadLetter),
    )
    packets = cast(KeyedStream[UserPacket], admitted.trues)
    by_user = op.flat_map_batch(
        "by_user", op.stateful_flat_map("unpack", packets, _unpack), _by_user
    )
    user_out = op.stateful_batch(
        "user",
        by_user,
        lambda resume: UserLogic(engine, gate_settings, timers, resume, warm_users, replicas),
    )
    tallies.append(op.flat_map_batch("count_user", user_out, _count_user_outputs))

    to_replicas = op.flat_map_batch("to_replicas", user_out, partial(_to_replicas, replicas))
    served = op.branch(
        "quality_split",
        op.stateful_batch("replica", to_replicas, replica_logic),
        lambda keyed: isinstance(keyed[1][1], QualityRecord),
    )
    quality = op.map("quality_records", cast(KeyedStream[Any], served.trues), _quality_line)
    _write("quality", quality, config.quality.output, config, _unkeyed_message, bytes)
    ranked = op.flat_map_batch(
        "in_input_order", cast(KeyedStream[Sequenced[Output]], served.falses), _in_input_order
    )
    tallies.append(op.flat_map_batch("count_out", ranked, _count_outputs))
    _write("output", ranked, config.output, config, kafka_message, file_line)

    dead: list[Stream[DeadLetter]] = [
        op.flat_map_batch("user_dead", user_out, _dead_letters),
        cast(Stream[DeadLetter], admitted.falses),
    ]
    if input_errors is not None:
        dead.append(input_errors)
    dead_letters = op.merge("dead", *dead)
    tallies.append(op.flat_map_batch("count_dead", dead_letters, _count_dead))
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
        from dataflows.metrics import JobMetrics

        warm = os.environ.get(WARM_START_ENV)
        config = load_config(os.environ.get(CONFIG_ENV, DEFAULT_CONFIG))
        flow = build_flow(
            config,
            report=JobMetrics.live(config),
            workers=int(os.environ.get(WORKERS_ENV, "1")),
            warm=None if not warm else WarmStart.read(Path(warm)),
        )
        # The process runs the job alone from here: what exists now (modules, compiled code,
        # a warm start) is never scanned again, and the job's own objects rarely.
        gc.freeze()
        gc.set_threshold(*COLLECTOR_THRESHOLDS)
        return flow
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
