"""Privacy through the real commands: pseudonymised user ids never reach the output, the dead
letters, the logs or the recovery store, and a forgotten user leaves no byte in the store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from kafka_job import ENTRY_POINT, ROOT, write_file_config

from operators.config import ConfigError, config_from_mapping, load_config
from operators.privacy import USER_KEY_ENV, Pseudonymiser

KEY = "test-only-user-key"
USERS = Pseudonymiser(KEY.encode())
T0 = 1_700_000_000_000
MINUTE = 60_000
#: Raw user ids distinctive enough that a byte search cannot find them by chance.
IDS = [f"raw-user-{n:04d}-xq" for n in range(12)]
FORGOTTEN = "raw-user-forgotten-xq"


def view(user: str, item: int, minute: int, event_id: str | None = None) -> dict[str, Any]:
    record = {"user_id": user, "item_id": f"i{item}", "ts": T0 + minute * MINUTE, "type": "view"}
    if event_id is not None:
        record["event_id"] = event_id
    return record


def write_lines(path: Path, records: list[dict[str, Any] | bytes], mode: str = "wb") -> Path:
    with path.open(mode) as file:
        for record in records:
            file.write((record if isinstance(record, bytes) else orjson.dumps(record)) + b"\n")
    return path


def hostile_stream() -> list[dict[str, Any] | bytes]:
    """Valid views, a duplicate and a too-late event (parsed, refused by the gate), and lines
    that do not parse but name a user (a missing type, broken JSON)."""
    records: list[dict[str, Any] | bytes] = [
        view(IDS[n % len(IDS)], n % 7, n, f"e{n}") for n in range(120)
    ]
    records += [view(FORGOTTEN, 1, 121), view(FORGOTTEN, 2, 122)]
    records.append(view(IDS[0], 3, 130, "e0"))
    records.append(view(IDS[1], 3, -10_000))
    records.append({"user_id": IDS[2], "item_id": "i1", "ts": T0})
    records.append(b'{"user_id": "' + IDS[3].encode() + b'", "item_id": ')
    return records


def streamrec(*argv: str, key: str | None = KEY) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name != USER_KEY_ENV}
    if key is not None:
        env[USER_KEY_ENV] = key
    command = [sys.executable, "-c", ENTRY_POINT, *argv]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def pseudonymising(path: Path, events: Path, folder: Path) -> Path:
    write_file_config(path, events, folder / "out.jsonl", folder / "dead.jsonl")
    config = yaml.safe_load(path.read_text())
    config["privacy"] = {"pseudonymise_users": True}
    path.write_text(yaml.safe_dump(config))
    return path


def leaks(data: bytes, names: list[str]) -> list[str]:
    return [name for name in names if name.encode() in data]


def test_the_key_comes_from_the_environment_only(tmp_path: Path) -> None:
    on = {"privacy": {"pseudonymise_users": True}}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(on))
    with pytest.raises(ConfigError, match=rf"\${USER_KEY_ENV} is not set") as caught:
        load_config(path, environ={})
    assert "\n" not in str(caught.value)
    config = load_config(path, environ={USER_KEY_ENV: KEY})
    assert config.pseudonymiser() == USERS
    assert KEY not in repr(config) and KEY not in repr(config.pseudonymiser())
    with pytest.raises(ConfigError, match=r'"privacy.user_key" is never read from a file; set \$'):
        config_from_mapping({"privacy": {"pseudonymise_users": True, "user_key": KEY}})
    assert load_config(None, environ={USER_KEY_ENV: KEY}).pseudonymiser() is None


def test_replay_writes_no_raw_user_id_anywhere(tmp_path: Path) -> None:
    events = write_lines(tmp_path / "events.jsonl", hostile_stream())
    config = pseudonymising(tmp_path / "config.yaml", events, tmp_path)
    out, dead = tmp_path / "recs.jsonl", tmp_path / "dead.jsonl"
    argv = ["replay", str(events), "--out", str(out), "--dead-letter", str(dead), "-c", str(config)]
    result = streamrec(*argv, "--json")
    assert result.returncode == 0, result.stderr
    names = [*IDS, FORGOTTEN]
    logs = (result.stdout + result.stderr).encode()
    for where, data in {"output": out.read_bytes(), "dead letters": dead.read_bytes()}.items():
        assert data and not leaks(data, names), f"raw user ids in the {where}"
    assert not leaks(logs, names)
    summary = json.loads(result.stdout)
    assert summary["events_in"] == summary["processed"] + summary["dead_lettered"] == 126

    # Lists are keyed by the pseudonym; a consumer with the key maps its ids to them.
    keys = {orjson.loads(line)["user_id"] for line in out.read_bytes().splitlines()}
    assert keys == {USERS.pseudonym(user) for user in names}
    letters = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    parsed = [orjson.loads(letter["raw"]) for letter in letters if "raw" in letter]
    assert sorted(record["user_id"] for record in parsed) == sorted(
        USERS.pseudonym(user) for user in IDS[:2]
    ), "a duplicate and a too-late event, as the pseudonymised event"
    withheld = [letter for letter in letters if "raw" not in letter]
    assert [letter["line"] for letter in withheld] == [125, 126]
    assert all(letter["raw_withheld_bytes"] > 0 for letter in withheld)

    # evaluate pseudonymises on the same config path: it scores those lists against the events.
    scored = streamrec("evaluate", str(events), "--recs", str(out), "-c", str(config), "--json")
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["streamrec"]["targets"] > 0
    assert not leaks((scored.stdout + scored.stderr).encode(), names)


@pytest.mark.parametrize("command", ["replay", "run", "evaluate"])
def test_every_command_refuses_to_start_without_the_key(tmp_path: Path, command: str) -> None:
    events = write_lines(tmp_path / "events.jsonl", [view(IDS[0], 1, 0)])
    config = pseudonymising(tmp_path / "config.yaml", events, tmp_path)
    result = streamrec(
        command, *([str(events)] if command != "run" else []), "-c", str(config), key=None
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert f"${USER_KEY_ENV} is not set" in result.stderr
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("pseudonymise", [False, True], ids=["raw ids", "pseudonyms"])
def test_a_forgotten_user_leaves_no_byte_in_the_recovery_store(
    tmp_path: Path, pseudonymise: bool
) -> None:
    """Two runs on one store (the second resumes, so the first one's snapshots are superseded
    and deleted): the forgotten user's id and pseudonym are in none of its bytes, the output
    key is tombstoned, and the other users are still there."""
    events = write_lines(tmp_path / "events.jsonl", hostile_stream()[:122])
    config = write_file_config(
        tmp_path / "config.yaml", events, tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    )
    if pseudonymise:
        config = pseudonymising(config, events, tmp_path)
    store = tmp_path / "store"
    run = ("run", "-c", str(config), "--recovery-dir", str(store), "--metrics-port", "0")
    first = streamrec(*run)
    assert first.returncode == 0, first.stderr
    forgotten = [FORGOTTEN, USERS.pseudonym(FORGOTTEN)]
    assert leaks(store_bytes(store), forgotten), "the user must be in the store before"
    forget = {"user_id": FORGOTTEN, "ts": T0 + 123 * MINUTE, "type": "forget_user"}
    write_lines(events, [forget, view(FORGOTTEN, 3, 100), view(IDS[0], 4, 124)], mode="ab")
    second = streamrec(*run)
    assert second.returncode == 0, second.stderr

    assert not leaks(store_bytes(store), forgotten)
    others = [USERS.pseudonym(user) if pseudonymise else user for user in IDS]
    assert set(leaks(store_bytes(store), others)) == set(others)
    if pseudonymise:
        assert not leaks(store_bytes(store), IDS)
    key = forgotten[pseudonymise]
    outputs = [orjson.loads(line) for line in (tmp_path / "out.jsonl").read_bytes().splitlines()]
    assert [o for o in outputs if o["user_id"] == key][-1] == {
        "user_id": key,
        "tombstone": True,
        "as_of": forget["ts"],
    }
    stale = orjson.loads((tmp_path / "dead.jsonl").read_bytes().splitlines()[-1])
    assert stale["reason"] == f"before forget_user at ts {forget['ts']}"


def store_bytes(store: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(store.iterdir()) if path.is_file())
