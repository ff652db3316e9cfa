"""JSON Lines files: the one reader and writer of event files (plain or gzip, ``.gz``).

Reading takes a file or a directory of files (read in name order, hidden files skipped, so a
writer's temporary file is never read half-written). Blank lines are skipped; every other line is
handed over as raw bytes, broken ones included, because validating is the caller's job and a
rejected line should be dead-lettered with its file and line number. Writing is atomic: records
go to a hidden temporary file next to the target, which is renamed over it once complete.
:func:`json_bytes` serialises a document the flow emits.

>>> import tempfile
>>> from pathlib import Path
>>> folder = Path(tempfile.mkdtemp())
>>> write_jsonl(folder / "events.jsonl.gz", [b'{"a": 1}', b'not json', b'{"a": 2}'])
3
>>> list(read_lines(folder / "events.jsonl.gz"))
[b'{"a": 1}', b'not json', b'{"a": 2}']
>>> [(line.number, line.raw) for line in numbered_lines(folder)][1]
(2, b'not json')
>>> json_bytes({"user_id": "u1", "items": []})
b'{"user_id":"u1","items":[]}'
"""

from __future__ import annotations

import gzip
import os
import secrets
from collections.abc import Iterable, Iterator
from io import BufferedIOBase
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

# Level 6 writes about three times faster than gzip's default 9 for a few percent more bytes.
_GZIP_LEVEL = 6
_BATCH = 4096
_READ_BYTES = 1 << 20


def json_bytes(document: Any) -> bytes:
    """``orjson.dumps(document)`` in a right-sized ``bytes``.

    orjson (3.12 on) returns its whole output buffer, at least about 4 KB even for a
    600-byte list, and never shrinks it. A batch of outputs in flight then holds 4 KB each: the
    end-of-input flush of a million-user replay (one list per user in one batch) peaked at
    about 10 GB of RSS. The copy costs about 0.2 µs.
    """
    return bytes(memoryview(orjson.dumps(document)))


class Line(NamedTuple):
    """One non-blank line: where it came from (file, 1-based line number) and its raw bytes."""

    #: The file's path, as a string (made once per file, not per line).
    path: str
    number: int
    raw: bytes


def open_bytes(path: Path) -> BufferedIOBase:
    """Open a file for binary reading, decompressing it when its name ends in ``.gz``."""
    if path.suffix == ".gz":
        return gzip.GzipFile(path, "rb")
    return path.open("rb")


def input_files(path: Path) -> list[Path]:
    """The files ``path`` names: itself, or a directory's visible files in name order."""
    if path.is_dir():
        return sorted(
            child for child in path.iterdir() if child.is_file() and not child.name.startswith(".")
        )
    if not path.exists():
        raise FileNotFoundError(f"no such file or directory: {path}")
    # Not only regular files: /dev/null, a named pipe or /dev/stdin read as the lines they hold.
    return [path]


def _split_lines(stream: BufferedIOBase) -> Iterator[bytes]:
    """The lines of ``stream`` without their ``\\n``, read a block at a time (what is there, up
    to a megabyte: a pipe's lines are not held back): two thirds of the cost of reading line by
    line. A line longer than a block is joined once, from its pieces."""
    pieces: list[bytes] = []
    while block := stream.read1(_READ_BYTES):
        lines = block.split(b"\n")
        if len(lines) == 1:
            pieces.append(block)
            continue
        if pieces:
            pieces.append(lines[0])
            lines[0] = b"".join(pieces)
        pieces = [lines.pop()]
        yield from lines
    if tail := b"".join(pieces):
        yield tail


def numbered_lines(path: Path) -> Iterator[Line]:
    """Every non-blank line of ``path`` (a file or directory) with its file and line number."""
    for name, number, raw in plain_lines(path):
        yield Line(name, number, raw)


def plain_lines(path: Path) -> Iterator[tuple[str, int, bytes]]:
    """:func:`numbered_lines` as plain tuples (file, line number, bytes): a file replay reads
    every line in every process, and with a :class:`Line` each (and the partition's own tuple)
    reading Online Retail took 0.55 s instead of 0.37 s."""
    for file in input_files(Path(path)):
        name = str(file)
        with open_bytes(file) as stream:
            for number, raw in enumerate(_split_lines(stream), start=1):
                if raw and not raw.isspace():
                    yield name, number, raw.rstrip(b"\r")


def read_lines(path: Path) -> Iterator[bytes]:
    """The raw bytes of every non-blank line of ``path`` (a file or directory), in order."""
    for line in numbered_lines(path):
        yield line.raw


def write_jsonl(path: Path, records: Iterable[bytes]) -> int:
    """Write one record per line (``.gz`` compresses) atomically; returns how many were written.

    A record is one JSON value without its line break; one that contains a line break would
    corrupt the file and raises ``ValueError`` (the target is then left untouched).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    # os.open with 0o666 honours the umask, so the result has the usual permissions (mkstemp's
    # would be 0o600).
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    written = 0
    try:
        with os.fdopen(handle, "wb") as raw_file:
            # An empty name and mtime 0 keep the gzip header free of the temporary name and the
            # clock, so the same records always give the same bytes.
            stream: IO[bytes] = raw_file
            if path.suffix == ".gz":
                stream = gzip.GzipFile(
                    filename="", mode="wb", fileobj=raw_file, compresslevel=_GZIP_LEVEL, mtime=0
                )
            with stream:
                batch: list[bytes] = []
                for record in records:
                    if b"\n" in record:
                        raise ValueError(f"record {written + 1} contains a line break")
                    batch.append(record)
                    written += 1
                    if len(batch) == _BATCH:
                        stream.write(b"\n".join(batch) + b"\n")
                        batch.clear()
                if batch:
                    stream.write(b"\n".join(batch) + b"\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return written
