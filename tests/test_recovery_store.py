"""A damaged recovery store stops ``streamrec run`` with one line that names the path and what
to do, before Bytewax starts (which would otherwise panic or print a traceback)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest
from kafka_job import ENTRY_POINT, ROOT, write_file_config

Damage = Callable[[Path], None]


def _run(config: Path, store: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", ENTRY_POINT, "run", "-c", str(config)]
    command += ["--recovery-dir", str(store), "--metrics-port", "0"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A store a finished run has snapshotted into, and the config of that run."""
    folder = tmp_path_factory.mktemp("store")
    events = folder / "events.jsonl"
    rows = [
        {
            "user_id": f"u{n % 7}",
            "item_id": f"i{n % 13}",
            "ts": 1_700_000_000_000 + n,
            "type": "view",
        }
        for n in range(500)
    ]
    events.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    config = write_file_config(folder / "config.yaml", events, folder / "out", folder / "dead")
    result = _run(config, folder / "store")
    assert result.returncode == 0, result.stderr
    return config, folder / "store"


def _overwrite_pages(path: Path) -> None:
    with path.open("r+b") as file:
        file.seek(4096 * 2)
        file.write(b"\xa5" * 4096 * 3)


DAMAGES: dict[str, tuple[Damage, str]] = {
    "a partition deleted": (
        lambda store: (store / "part-3.sqlite3").unlink(),
        "lacks partitions [3] of 12; restore their part-N.sqlite3 files from a backup, or delete",
    ),
    "a partition truncated": (
        lambda store: (store / "part-5.sqlite3").write_bytes(
            (store / "part-5.sqlite3").read_bytes()[:10_000]
        ),
        "part-5.sqlite3 is not a readable recovery partition",
    ),
    "pages overwritten": (
        lambda store: _overwrite_pages(store / "part-0.sqlite3"),
        "part-0.sqlite3 is not a readable recovery partition",
    ),
    "an empty partition file": (
        lambda store: (store / "part-2.sqlite3").write_bytes(b""),
        "part-2.sqlite3 is not a readable recovery partition (no such table: parts)",
    ),
    "the store replaced by a file": (
        lambda store: (shutil.rmtree(store), store.write_text("x")),
        "is a file; name a directory",
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_a_damaged_store_is_one_line_naming_the_path_and_the_way_out(
    store: tuple[Path, Path], tmp_path: Path, damage: str
) -> None:
    config, intact = store
    copy = tmp_path / "store"
    shutil.copytree(intact, copy)
    harm, expected = DAMAGES[damage]
    harm(copy)
    result = _run(config, copy)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"streamrec run: {copy}") or str(copy) in lines[0], lines[0]
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_an_intact_store_resumes(store: tuple[Path, Path], tmp_path: Path) -> None:
    config, intact = store
    copy = tmp_path / "store"
    shutil.copytree(intact, copy)
    result = _run(config, copy)
    assert result.returncode == 0, result.stderr
