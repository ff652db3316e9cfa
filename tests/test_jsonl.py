from __future__ import annotations

import gzip
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from operators import jsonl


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz"])
def test_round_trip_plain_and_gzip(tmp_path: Path, name: str) -> None:
    records = [b'{"n": %d}' % n for n in range(10_000)]
    path = tmp_path / name
    assert jsonl.write_jsonl(path, records) == len(records)
    assert list(jsonl.read_lines(path)) == records


def test_gzip_output_is_really_compressed_and_deterministic(tmp_path: Path) -> None:
    records = [b'{"same": "line"}'] * 1000
    first, second = tmp_path / "a.jsonl.gz", tmp_path / "b.jsonl.gz"
    jsonl.write_jsonl(first, records)
    jsonl.write_jsonl(second, records)
    assert gzip.decompress(first.read_bytes()).count(b"\n") == 1000
    assert first.read_bytes() == second.read_bytes()


def test_blank_lines_are_skipped_broken_lines_kept_with_their_numbers(tmp_path: Path) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"a": 1}\r\n\n   \n{broken\n{"a": 2}')
    lines = list(jsonl.numbered_lines(path))
    assert [(line.number, line.raw) for line in lines] == [
        (1, b'{"a": 1}'),
        (4, b"{broken"),
        (5, b'{"a": 2}'),
    ]
    assert all(line.path == str(path) for line in lines)


@pytest.mark.parametrize("block", [1, 3, 7, 1 << 20])
def test_lines_split_across_blocks_come_out_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    monkeypatch.setattr(jsonl, "_READ_BYTES", block)
    path = tmp_path / "long.jsonl.gz"
    long = b'{"title": "%s"}' % (b"x" * 50)
    with gzip.open(path, "wb") as stream:
        stream.write(b"%s\r\n\n%s\n  \nlast" % (long, long))
    lines = [(line.number, line.raw) for line in jsonl.numbered_lines(path)]
    assert lines == [(1, long), (3, long), (5, b"last")]


def test_directory_is_read_in_name_order_without_hidden_files(tmp_path: Path) -> None:
    jsonl.write_jsonl(tmp_path / "b.jsonl", [b"2"])
    jsonl.write_jsonl(tmp_path / "a.jsonl.gz", [b"1"])
    (tmp_path / ".b.jsonl.123.tmp").write_bytes(b"half written\n")
    (tmp_path / "sub").mkdir()
    assert list(jsonl.read_lines(tmp_path)) == [b"1", b"2"]


def test_missing_input_is_a_readable_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no such file or directory"):
        list(jsonl.read_lines(tmp_path / "nothing.jsonl"))


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    jsonl.write_jsonl(path, [b"old"])

    def records() -> Iterator[bytes]:
        yield b"new"
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError):
        jsonl.write_jsonl(path, records())
    with pytest.raises(ValueError, match="line break"):
        jsonl.write_jsonl(path, [b"a\nb"])
    assert list(jsonl.read_lines(path)) == [b"old"]
    assert os.listdir(tmp_path) == ["events.jsonl"]


def test_writer_creates_missing_folders(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "events.jsonl"
    assert jsonl.write_jsonl(path, []) == 0
    assert path.read_bytes() == b""


def test_emitted_json_holds_only_its_own_bytes() -> None:
    # A batch of a million lists in flight must not hold orjson's whole output buffer each.
    document = {"user_id": "u1", "items": [{"item_id": "i1", "score": 1.5, "because": "i0"}]}
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = [jsonl.json_bytes(document) for _ in range(1000)]
        per_document = (tracemalloc.get_traced_memory()[0] - before) / len(kept)
    finally:
        tracemalloc.stop()
    assert orjson.loads(kept[0]) == document
    assert per_document < 4 * len(kept[0])
