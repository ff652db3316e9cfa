"""Hostile streams: duplicates applied once also across a restart (``streamrec run`` on a
recovery store), a burst of one user within its state bound, a flood of new users bounded by
expiry (the user step driven the way Bytewax drives it: batches, timers, discards)."""

from __future__ import annotations

import pickle
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from fake_clock import Clock
from kafka_job import ENTRY_POINT, ROOT, write_file_config

from dataflows.steps import Timers, UserLogic, UserOutput
from operators.config import Config
from operators.engine_config import EngineConfig
from operators.events import Event
from operators.intake import Admitted, Origin
from operators.windows import DIGEST_SIZE

T0 = 1_700_000_000_000
MINUTE = 60_000
GATE = Config().gate_settings()
ENGINE = EngineConfig()


def view(user: str, item: int, ms: int, event_id: str) -> bytes:
    record = {"user_id": user, "item_id": f"i{item}", "ts": T0 + ms, "type": "view"}
    return orjson.dumps({**record, "event_id": event_id})


def run(config: Path, store: Path) -> None:
    command = [sys.executable, "-c", ENTRY_POINT, "run", "-c", str(config)]
    command += ["--recovery-dir", str(store), "--metrics-port", "0"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_duplicates_are_applied_once_also_across_a_restart(tmp_path: Path) -> None:
    """300 events of 10 users, each sent twice in the first run; the second run resumes from
    the store and reads the 300 again plus 100 new ones: 400 applied, 500 duplicates."""
    first = [view(f"u{n % 10}", n % 17, n * MINUTE, f"e{n}") for n in range(300)]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in first + first))
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    config = write_file_config(tmp_path / "config.yaml", events, out, dead)
    store = tmp_path / "store"
    run(config, store)
    fresh = [view(f"u{n % 10}", n % 17, n * MINUTE, f"e{n}") for n in range(300, 400)]
    with events.open("ab") as file:
        file.write(b"".join(line + b"\n" for line in first + fresh))
    run(config, store)

    letters = [orjson.loads(line) for line in dead.read_bytes().splitlines()]
    assert len(letters) == 600
    assert {letter["reason"] for letter in letters} == {
        f"duplicate event_id e{n}" for n in range(300)
    }
    lists = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    versions = [(entry["user_id"], entry["version"]) for entry in lists]
    assert len(versions) == len(set(versions)), "no list is served twice"
    # Events a minute apart in 1 s windows: one list per applied event of each user.
    assert len(lists) == 400


def admitted(seq: int, user: str, item: int, ms: int) -> Admitted:
    event = Event(user, f"i{item}", T0 + ms, "view", event_id=f"e{seq}")
    return Admitted(seq, event, Origin("events.jsonl", seq + 1), b"")


def test_a_burst_of_100000_events_for_one_user_stays_within_its_bound(clock: Clock) -> None:
    logic = UserLogic(ENGINE, GATE, Timers.from_config(Config()), None)
    sizes = []
    for start in range(0, 100_000, 1_000):
        batch = [admitted(n, "u1", n % 5_000, n) for n in range(start, start + 1_000)]
        out, discard = logic.on_batch([batch])
        assert not discard and all(isinstance(output, UserOutput) for output in out)
        sizes.append(len(pickle.dumps(logic.snapshot())))
    gate, state, _touched, _seq, _listed = logic.snapshot()
    assert state is not None
    _user, history, seen, *_ = state
    ids = gate[2]
    assert len(history) == ENGINE.history_cap and len(seen) == ENGINE.seen_cap
    assert len(ids) == GATE.ids_per_user * DIGEST_SIZE
    # The snapshot stops growing once the caps are reached (at the seen cap, 1,000 items).
    assert max(sizes) == pytest.approx(sizes[-1], rel=0.05)
    assert sizes[-1] < 16_000


def test_a_flood_of_new_users_is_bounded_by_expiry(clock: Clock) -> None:
    """100 new users a minute for 3 hours, each seen once; users expire after an hour idle.
    Bytewax asks each key's logic for ``notify_at`` and calls ``on_notify`` then; a discarded
    key's state is gone."""
    config = Config()
    timers = Timers(None, timedelta(hours=1), None)
    live: dict[str, UserLogic] = {}
    most = 0
    seq = 0
    for _minute in range(180):
        clock.now += timedelta(minutes=1)
        for user in list(live):
            due = live[user].notify_at()
            if due is not None and due <= clock.now and live[user].on_notify()[1]:
                del live[user]
        for _ in range(100):
            user = f"flood-{seq}"
            logic = UserLogic(ENGINE, config.gate_settings(), timers, None)
            logic.on_batch([[admitted(seq, user, seq % 50, seq)]])
            live[user] = logic
            seq += 1
        most = max(most, len(live))
    assert seq == 18_000
    assert most <= 100 * 61, "at most an hour (and a minute) of new users is held"
    assert len(live) == most
