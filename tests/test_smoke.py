"""The smoke dataflow on files: no services needed."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import orjson
import pytest

from dataflows import cli, smoke
from operators.events import Event, parse_event
from operators.jsonl import read_lines, write_jsonl


def _final_counts(lines: list[bytes]) -> dict[str, int]:
    final: dict[str, int] = {}
    for line in lines:
        record = orjson.loads(line)
        final[record["user_id"]] = max(final.get(record["user_id"], 0), record["count"])
    return final


def test_counts_each_users_events_and_reports_what_is_not_an_event(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    event = b'{"user_id": "%s", "item_id": "i1", "ts": 1700000000000, "type": "view"}'
    write_jsonl(
        tmp_path / "in.jsonl.gz",
        [event % b"ann", b"{not json", event % b"bob", event % b"ann", b'{"user_id": "ann"}'],
    )
    out = tmp_path / "counts.jsonl"
    argv = ["smoke", "--input", str(tmp_path / "in.jsonl.gz"), "--output", str(out)]
    assert cli.main(argv) == 0

    lines = list(read_lines(out))
    assert sorted(lines) == [
        b'{"user_id":"ann","count":1}',
        b'{"user_id":"ann","count":2}',
        b'{"user_id":"bob","count":1}',
    ]
    reported = capsys.readouterr().err.splitlines()
    assert reported[0].startswith("smoke: skipped input: invalid JSON")
    assert reported[1] == 'smoke: skipped input: missing field "type"'


def test_without_arguments_it_counts_the_bundled_sample_to_stdout(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["smoke"]) == 0

    parsed = [parse_event(line) for line in read_lines(smoke.bundled_sample())]
    expected = Counter(event.user_id for event in parsed if isinstance(event, Event))
    printed = capsys.readouterr().out.encode().splitlines()
    assert len(printed) == sum(expected.values())
    assert _final_counts(printed) == expected


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--in-topic", "a"], "--in-topic and --out-topic need --brokers"),
        (["--brokers", "localhost:9092", "--in-topic", "a"], "--brokers needs --in-topic and"),
        (["--brokers", "b:1", "--input", "x", "--in-topic", "a", "--out-topic", "b"], "--input"),
        (["--input", "/no/such/events.jsonl"], "no such file or directory"),
    ],
)
def test_option_mistakes_are_one_readable_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["smoke", *argv]) == 2
    error = capsys.readouterr().err
    assert error.startswith("streamrec smoke: ") and message in error
    assert error.count("\n") == 1
