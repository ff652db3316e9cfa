"""File source and sinks: origins for dead letters, resuming without loss or duplicates."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from dataflows.connectors import JsonLinesSink, JsonLinesSource, TallySink
from operators.intake import Origin
from operators.tally import Tally


def read_all(source: JsonLinesSource, resume: int | None = None) -> list:
    partition = source.build_part("input", "events", resume)
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
