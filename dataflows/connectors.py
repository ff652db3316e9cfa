"""Bytewax sources and sinks for local files and the job's accounting.

* :class:`JsonLinesSource` reads a JSON Lines file (``.gz`` too) or a directory of them as
  :class:`~operators.intake.Raw` messages (file and line number kept for dead letters), in one
  partition per worker that holds its workers' users' lines in file order; a partition's resume
  state is the count of lines it has passed.
* :class:`JsonLinesSink` writes one record per line to one file. It flushes (and fsyncs) only
  when Bytewax snapshots, not per batch, and on resume truncates back to the snapshotted length,
  so with recovery the file holds every record exactly once.
* :class:`TallySink` sums :class:`~operators.tally.Tally` counts in one partition and hands the
  running total to a callback (progress display, final summary); the total is its snapshot, so
  counts survive a restart.
* :class:`OffsetCommitSink` commits the input offsets read up to the end of each epoch to a
  Kafka consumer group, so that Kafka's lag tools see the job (Bytewax's Kafka source assigns
  partitions itself and keeps its offsets in the recovery store, in no group).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from itertools import islice
from pathlib import Path
from typing import ClassVar, TypeVar, cast

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import Consumer, KafkaException, TopicPartition
from typing_extensions import override

from dataflows.routing import worker_of
from operators.events import plain_user_id, user_key
from operators.intake import Origin, Raw
from operators.jsonl import plain_lines
from operators.tally import Tally

X = TypeVar("X")
S = TypeVar("S")

#: (file, line number, bytes) of one line read.
FileLine = tuple[str, int, bytes]

#: Users whose worker a file partition remembers (a reader of a million-user stream forgets them
#: all when that many are known).
_OWNERS_KEPT = 1 << 16


class _JsonLinesPartition(StatefulSourcePartition[Raw, int]):
    """The lines of users whose keys live on worker ``part`` of ``parts``; its resume state is
    the count of the file's lines it has passed (its own and the other partitions')."""

    def __init__(
        self,
        path: Path,
        batch_size: int,
        part: int,
        parts: int,
        skip: int,
        key: Callable[[str], str],
    ) -> None:
        self._read = skip
        self._key = key
        self._batch_size = batch_size
        self._part = part
        self._parts = parts
        self._owners: dict[bytes, int] = {}
        self._lines: Iterator[FileLine] = islice(plain_lines(path), skip, None)

    def _mine(self, first: int, chunk: list[FileLine]) -> list[Raw]:
        """The lines of ``chunk`` (``first`` its first line's position) whose users this
        partition holds. Every process reads every line, so the owner of a user's plain id is
        remembered (in one loop: a method call per line cost a tenth of the check)."""
        owners, part = self._owners, self._part
        mine = []
        for seq, (path, number, raw) in enumerate(chunk, first):
            token = plain_user_id(raw)
            owner = None if token is None else owners.get(token)
            if owner is None:
                owner = self._owner(seq, raw, token)
            if owner == part:
                mine.append(Raw(seq, Origin(path, number), raw))
        return mine

    def _owner(self, seq: int, raw: bytes, token: bytes | None) -> int:
        user = user_key(raw)
        if user is None:
            return seq % self._parts
        owner = worker_of(self._key(user), self._parts)
        if token is not None:
            if len(self._owners) == _OWNERS_KEPT:
                self._owners.clear()
            self._owners[token] = owner
        return owner

    @override
    def next_batch(self) -> list[Raw]:
        chunk = list(islice(self._lines, self._batch_size))
        if not chunk:
            raise StopIteration
        first = self._read
        self._read += len(chunk)
        if self._parts > 1:
            return self._mine(first, chunk)
        lines = enumerate(chunk, first)
        return [Raw(seq, Origin(path, number), raw) for seq, (path, number, raw) in lines]

    @override
    def snapshot(self) -> int:
        return self._read


class JsonLinesSource(FixedPartitionedSource[Raw, int]):
    """Read a JSON Lines file or directory (in name order) as ``parts`` partitions, one per
    worker: each reads the whole file and keeps the lines of the users whose keys Bytewax puts
    on its worker (unreadable lines are shared out by line number), so every worker parses its
    own users' events, in file order. One partition reads every line. ``key`` turns a user id
    into the user step's key (a pseudonym)."""

    def __init__(
        self,
        path: Path,
        batch_size: int = 1000,
        parts: int = 1,
        key: Callable[[str], str] = str,
    ) -> None:
        self._path = Path(path)
        self._batch_size = batch_size
        self._parts = parts
        self._key = key

    @override
    def list_parts(self) -> list[str]:
        if self._parts == 1:
            return ["events"]
        # Bytewax makes worker N the primary of the N-th partition name in sorted order.
        return [f"events-{part:04d}-of-{self._parts:04d}" for part in range(self._parts)]

    @override
    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _JsonLinesPartition:
        part = 0 if self._parts == 1 else int(for_part.split("-")[1])
        return _JsonLinesPartition(
            self._path, self._batch_size, part, self._parts, resume_state or 0, self._key
        )


#: Records joined per write.
_WRITE_SLICE = 4096


class _JsonLinesSinkPartition(StatefulSinkPartition[bytes, int]):
    def __init__(self, path: Path, resume_state: int | None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = path.open("ab")
        # A device or a pipe (``--out /dev/null``) can be neither truncated nor synced.
        self._regular = stat.S_ISREG(os.fstat(self._file.fileno()).st_mode)
        if self._regular:
            self._file.truncate(resume_state or 0)
            self._file.seek(resume_state or 0)

    @override
    def write_batch(self, values: list[bytes]) -> None:
        # In slices: one join of a whole batch doubles its memory for a moment, and the end of
        # a replay hands over a list for every user in one batch.
        for start in range(0, len(values), _WRITE_SLICE):
            self._file.write(b"\n".join(values[start : start + _WRITE_SLICE]) + b"\n")

    @override
    def snapshot(self) -> int:
        self._file.flush()
        if not self._regular:
            return 0
        os.fsync(self._file.fileno())
        return self._file.tell()

    @override
    def close(self) -> None:
        self._file.close()


class _OnePartitionSink(FixedPartitionedSink[X, S]):
    """A sink of one partition, ``PART``: every item goes to it, whatever its key."""

    PART: ClassVar[str]

    @override
    def list_parts(self) -> list[str]:
        return [self.PART]

    @override
    def part_fn(self, item_key: str) -> int:
        return 0


class JsonLinesSink(_OnePartitionSink[bytes, int]):
    """Write each value (one JSON document, as bytes) as a line of one file."""

    PART = "out"

    def __init__(self, path: Path) -> None:
        self._path = Path(path)

    @override
    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> _JsonLinesSinkPartition:
        return _JsonLinesSinkPartition(self._path, resume_state)


class _TallyPartition(StatefulSinkPartition[Tally, tuple[int, ...]]):
    def __init__(self, resume_state: tuple[int, ...] | None, report: Callable[[Tally], None]):
        self._total = Tally() if resume_state is None else Tally(*resume_state)
        self._report = report

    @override
    def write_batch(self, values: list[Tally]) -> None:
        for value in values:
            self._total += value
        self._report(self._total)

    @override
    def snapshot(self) -> tuple[int, ...]:
        return self._total.astuple()

    @override
    def close(self) -> None:
        self._report(self._total)


class TallySink(_OnePartitionSink[Tally, tuple[int, ...]]):
    """Sum the counts of the whole job in one partition; ``report`` sees every new total."""

    PART = "tally"

    def __init__(self, report: Callable[[Tally], None]) -> None:
        self._report = report

    @override
    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple[int, ...] | None
    ) -> _TallyPartition:
        return _TallyPartition(resume_state, self._report)


#: (topic, partition) -> the offset after the newest message read there.
Offsets = dict[tuple[str, int], int]


def next_offsets(batch: list[Raw]) -> list[Offsets]:
    """The offset after the last message of each Kafka partition in ``batch`` (one small dict
    per batch, whatever its size).

    >>> next_offsets([Raw(0, Origin("events", 7, 0), b""), Raw(1, Origin("events", 3, 1), b""),
    ...               Raw(2, Origin("events", 8, 0), b"")])
    [{('events', 0): 9, ('events', 1): 4}]
    """
    offsets: Offsets = {}
    for raw in batch:
        origin = raw.origin
        offsets[(origin.source, cast(int, origin.partition))] = origin.offset + 1
    return [offsets]


class _OffsetCommitPartition(StatefulSinkPartition[Offsets, None]):
    def __init__(self, settings: dict[str, str]) -> None:
        self._consumer = Consumer({**settings, "enable.auto.commit": False})
        self._offsets: Offsets = {}
        self._committed: Offsets = {}

    @override
    def write_batch(self, values: list[Offsets]) -> None:
        for offsets in values:
            for part, offset in offsets.items():
                self._offsets[part] = max(offset, self._offsets.get(part, 0))

    def _commit(self, asynchronous: bool) -> None:
        changed = [
            TopicPartition(topic, partition, offset)
            for (topic, partition), offset in self._offsets.items()
            if self._committed.get((topic, partition)) != offset
        ]
        if changed:
            try:
                self._consumer.commit(offsets=changed, asynchronous=asynchronous)
            except KafkaException:
                return  # the broker is away: the next epoch commits again
            self._committed.update(self._offsets)
        self._consumer.poll(0)  # serves the callbacks of earlier asynchronous commits

    @override
    def snapshot(self) -> None:
        # Bytewax calls this at the end of every epoch, with or without recovery.
        self._commit(asynchronous=True)

    @override
    def close(self) -> None:
        self._commit(asynchronous=False)
        self._consumer.close()


class OffsetCommitSink(_OnePartitionSink[Offsets, None]):
    """Commit the offsets of :func:`next_offsets` to the consumer group in ``settings``
    (librdkafka properties with ``group.id``) once per epoch, from one partition."""

    PART = "offsets"

    def __init__(self, settings: dict[str, str]) -> None:
        self._settings = settings

    @override
    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _OffsetCommitPartition:
        return _OffsetCommitPartition(self._settings)
