"""A warm-start directory that cannot be used is a one-line error naming it, in every command."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from dataflows import cli, run
from operators.engine import Engine
from operators.engine_config import EngineConfig
from operators.events import Event
from operators.jsonl import write_jsonl

T0 = 1_700_000_000_000


@pytest.fixture(autouse=True)
def no_launch(monkeypatch: pytest.MonkeyPatch) -> None:
    """``streamrec run`` must refuse before it replaces this process with Bytewax."""

    def launched(*_args: object) -> None:
        raise AssertionError("streamrec run launched the job")

    monkeypatch.setattr(run.os, "execve", launched)


@pytest.fixture
def events(tmp_path: Path) -> Path:
    path = tmp_path / "events.jsonl"
    rows = [Event(f"u{n % 3}", f"i{n % 5}", T0 + n * 60_000, "view") for n in range(12)]
    write_jsonl(path, [event.to_json() for event in rows])
    return path


def pretrained(directory: Path) -> Path:
    engine = Engine(EngineConfig())
    engine.learn(Event("ann", "tea", T0, "purchase"))
    engine.save(directory)
    return directory


def missing(directory: Path) -> Path:
    return directory / "nowhere"


def without_model(directory: Path) -> Path:
    (pretrained(directory) / "model.pickle").unlink()
    return directory


def empty_model(directory: Path) -> Path:
    (pretrained(directory) / "model.pickle").write_bytes(b"")
    return directory


def truncated_users(directory: Path) -> Path:
    users = pretrained(directory) / "users.pickle"
    users.write_bytes(users.read_bytes()[:5])
    return directory


def broken_meta(directory: Path) -> Path:
    (pretrained(directory) / "meta.json").write_text("{not json")
    return directory


DAMAGE: dict[str, Callable[[Path], Path]] = {
    "missing": missing,
    "without_model": without_model,
    "empty_model": empty_model,
    "truncated_users": truncated_users,
    "broken_meta": broken_meta,
}


def command(name: str, events: Path, warm: Path) -> list[str]:
    if name == "run":
        return ["run", "--no-recovery", "--metrics-port", "0", "--warm-start", str(warm)]
    return [name, str(events), "--warm-start", str(warm)]


@pytest.mark.parametrize("name", ["evaluate", "replay", "run"])
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_an_unusable_warm_start_is_one_line_naming_the_directory(
    name: str, damage: str, events: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warm = DAMAGE[damage](tmp_path / "warm")
    capsys.readouterr()
    assert cli.main(command(name, events, warm)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"streamrec {name}: ") and err.count("\n") == 1, err
    assert str(warm.name) in err and "Traceback" not in err


@pytest.mark.parametrize("name", ["evaluate", "replay", "run"])
def test_a_warm_start_of_other_dimensions_is_refused_in_one_line(
    name: str, events: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    warm = pretrained(tmp_path / "warm")
    config = tmp_path / "config.yaml"
    config.write_text("engine:\n  dimensions: 8\n")
    capsys.readouterr()
    assert cli.main([*command(name, events, warm), "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"streamrec {name}: ") and err.count("\n") == 1, err
    assert "dimensions" in err
