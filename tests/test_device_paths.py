"""``/dev/null`` (or any device or pipe) as an input, output or dead letter: it holds no lines,
swallows what is written, and is neither truncated nor synced."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from dataflows.cli import main as cli
from operators import jsonl

T0 = 1_700_000_000_000


def _events(path: Path) -> Path:
    rows = [
        {"user_id": "u", "item_id": f"i{n}", "ts": T0 + n * 60_000, "type": "view"}
        for n in range(3)
    ]
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in [*rows, {"bad": 1}]))
    return path


def test_dev_null_reads_as_no_lines() -> None:
    assert list(jsonl.numbered_lines(Path("/dev/null"))) == []


def test_replay_to_dev_null_counts_everything_and_exits_cleanly(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events = _events(tmp_path / "events.jsonl")
    argv = ["replay", str(events), "--out", "/dev/null", "--dead-letter", "/dev/null", "--json"]
    assert cli(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["events_in"], summary["processed"], summary["dead_lettered"]) == (4, 3, 1)
    assert summary["lists_out"] == 3


def test_evaluate_dev_null_recs_scores_no_lists_without_a_traceback(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    events = _events(tmp_path / "events.jsonl")
    assert cli(["evaluate", str(events), "--recs", "/dev/null", "--json"]) == 0
    scores = json.loads(capsys.readouterr().out)["streamrec"]
    assert (scores["hr@10"], scores["coverage"], scores["targets"]) == (0.0, 0.0, 3)
