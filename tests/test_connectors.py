"""File source and sinks: origins for dead letters, resuming without loss or duplicates."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from dataflows import connectors
from dataflows.connectors import JsonLinesSink, JsonLinesSource, TallySink
from dataflows.routing import worker_of
from operators.events import user_key
from operators.intake import Origin
from operators.tally import Tally


def read_all(source: JsonLinesSource, resume: int | None = None, part: str = "events") -> list:
    partition = source.build_part("input", part, resume)
    out = []
    with pytest.raises(StopIteration):
        while True:
            out.extend(partition.next_batch())
    return out


def test_source_numbers_lines_per_file_and_positions_across_files(tmp_path: Path) -> None:
    folder = tmp_path / "events"
    folder.mkdir()
    (folder / "a.jsonl").write_bytes(b'{"n": 1}\n\n{"n": 2}\n')
    with gzip.open(folder / "b.jsonl.gz", "wb") as stream:
        stream.write(b'{"n": 3}\n')
    source = JsonLinesSource(folder, batch_size=2)
    assert source.list_parts() == ["events"]
    raws = read_all(source)
    assert [raw.seq for raw in raws] == [0, 1, 2]
    assert [raw.origin for raw in raws] == [
        Origin(str(folder / "a.jsonl"), 1),
        Origin(str(folder / "a.jsonl"), 3),
        Origin(str(folder / "b.jsonl.gz"), 1),
    ]
    assert [raw.value for raw in raws] == [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']


def test_source_resumes_after_the_last_line_read(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(b'{"n": %d}\n' % n for n in range(5)))
    partition = JsonLinesSource(path, batch_size=2).build_part("input", "events", None)
    partition.next_batch()
    resume = partition.snapshot()
    assert resume == 2
    rest = read_all(JsonLinesSource(path), resume)
    assert [raw.seq for raw in rest] == [2, 3, 4]


def test_partitions_share_the_lines_out_by_the_users_worker_in_file_order(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    users = [f"u{n % 7}" for n in range(40)]
    lines = [b'{"user_id": "%s", "n": %d}' % (user.encode(), n) for n, user in enumerate(users)]
    path.write_bytes(b"\n".join([*lines, b"not json", b'{"n": 41}']) + b"\n")
    source = JsonLinesSource(path, batch_size=3, parts=2)
    parts = source.list_parts()
    assert parts == sorted(parts) and len(parts) == 2
    shares = [read_all(source, part=part) for part in parts]
    assert sorted(raw.seq for share in shares for raw in share) == list(range(42))
    for worker, share in enumerate(shares):
        assert [raw.seq for raw in share] == sorted(raw.seq for raw in share)
        mine = {users[raw.seq] for raw in share if raw.seq < 40}
        assert mine and all(worker_of(user, 2) == worker for user in mine)


@pytest.mark.parametrize("kept", [2, 1 << 16], ids=["forgetting", "remembering"])
def test_partitions_remember_owners_without_changing_who_owns_a_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kept: int
) -> None:
    # The same users written several ways, ids named twice or not UTF-8 (routed by position:
    # their owner must not be remembered by their bytes), and a cache that forgets.
    monkeypatch.setattr(connectors, "_OWNERS_KEPT", kept)
    variants = [
        b'{"user_id": "ann", "n": 1}',
        b'{"user_id":"ann","n":2}',
        b'{"user_id": 42}',
        b'{"user_id": "42"}',
        b'{"user_id": "\\u0061nn"}',
        b'{"user_id": "\xff\xfe"}',
        b'{"user_id": "bob", "user_id": "cy"}',
        b'{"user_id": "dee"}',
        b"not json",
    ]
    lines = [variants[n % len(variants)] for n in range(90)]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    source = JsonLinesSource(path, batch_size=4, parts=2)
    for worker, part in enumerate(source.list_parts()):
        expected = [
            seq
            for seq, raw in enumerate(lines)
            if (seq % 2 if (user := user_key(raw)) is None else worker_of(user, 2)) == worker
        ]
        assert [raw.seq for raw in read_all(source, part=part)] == expected


def test_a_partition_resumes_where_it_left_off(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"".join(b'{"user_id": "u%d"}\n' % (n % 5) for n in range(30)))
    source = JsonLinesSource(path, batch_size=4, parts=2)
    part = source.list_parts()[1]
    whole = read_all(source, part=part)
    partition = source.build_part("input", part, None)
    first = partition.next_batch() + partition.next_batch()
    rest = read_all(source, partition.snapshot(), part)
    assert [raw.seq for raw in first + rest] == [raw.seq for raw in whole]


def test_sink_truncates_to_the_snapshot_on_resume(tmp_path: Path) -> None:
    path = tmp_path / "out" / "recs.jsonl"
    sink = JsonLinesSink(path)
    partition = sink.build_part("output", "out", None)
    partition.write_batch([b'{"a": 1}', b'{"a": 2}'])
    resume = partition.snapshot()
    partition.write_batch([b'{"a": 3}'])  # written after the snapshot: lost in a crash
    partition.close()
    resumed = sink.build_part("output", "out", resume)
    resumed.write_batch([b'{"a": 3}'])
    resumed.close()
    assert path.read_bytes() == b'{"a": 1}\n{"a": 2}\n{"a": 3}\n'
    fresh = sink.build_part("output", "out", None)
    fresh.close()
    assert path.read_bytes() == b"", "a new run starts from an empty file"


def test_tally_sink_reports_running_totals_and_resumes_them() -> None:
    seen: list[Tally] = []
    sink = TallySink(seen.append)
    partition = sink.build_part("accounting", "tally", None)
    partition.write_batch([Tally(events_in=2), Tally(processed=1, dead_lettered=1)])
    assert seen[-1] == Tally(events_in=2, processed=1, dead_lettered=1)
    resumed = sink.build_part("accounting", "tally", partition.snapshot())
    resumed.write_batch([Tally(events_in=1, processed=1)])
    assert seen[-1] == Tally(events_in=3, processed=2, dead_lettered=1)
    assert seen[-1].balanced


def test_sink_writes_a_batch_larger_than_one_write_as_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "recs.jsonl"
    partition = JsonLinesSink(path).build_part("output", "out", None)
    records = [b'{"n": %d}' % number for number in range(10_001)]
    partition.write_batch(records)
    partition.close()
    assert path.read_bytes().splitlines() == records
