"""The dataflow's step logics on their own: live timers, snapshots, and the rank step's order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dataflows import steps
from dataflows.steps import ItemLogic, RankLogic, Timers, UserLogic
from operators.engine_config import EngineConfig
from operators.events import FORGET_USER, Event
from operators.intake import Admitted, Origin
from operators.messages import TREND_KEY, ForgetUser, ItemMessage, RankHeader, RankPart, Tombstone
from operators.windows import GateSettings

T0 = 1_700_000_000_000
START = datetime(2026, 1, 1, tzinfo=UTC)
ENGINE = EngineConfig()
LIVE = Timers(timedelta(seconds=60), timedelta(days=30), timedelta(days=90))
REPLAY = Timers(None, None, None)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(steps, "_now", fake)
    return fake


def admitted(seq: int, item: str | None, minute: int, kind: str = "view") -> Admitted:
    event = Event("u1", item, T0 + minute * 60_000, kind)
    return Admitted(seq, event, Origin("events.jsonl", seq + 1), event.to_json())


def kinds(outputs: object) -> list[tuple[int, str]]:
    """(events processed, what the step asks: "train", "serve", "train+serve" or "learn")."""
    described = []
    for output in outputs:  # type: ignore[attr-defined]
        header = output.step.header
        if header is None:
            asked = "learn"
        else:
            asked = "+".join(
                name
                for name, flag in (("train", bool(header.labels)), ("serve", header.version))
                if flag
            )
        described.append((output.processed, asked))
    return described


def test_live_user_step_learns_at_once_then_serves_an_idle_window_then_expires(
    clock: Clock,
) -> None:
    logic = UserLogic(ENGINE, GateSettings(length_ms=600_000), LIVE, None)
    out, discard = logic.on_batch([admitted(0, "a", 0), admitted(1, "b", 1)])
    assert kinds(out) == [(1, "train"), (1, "learn")] and not discard
    assert logic.notify_at() == START + timedelta(seconds=60)

    clock.now = START + timedelta(seconds=61)
    (closed,), discard = logic.on_notify()
    assert kinds([closed]) == [(0, "serve")] and not discard
    assert [entry[0] for entry in closed.step.header.history] == ["a", "b"]
    assert logic.notify_at() == START + timedelta(days=30), "then only the expiry remains"

    clock.now = START + timedelta(days=30, seconds=1)
    out, discard = logic.on_notify()
    assert (list(out), discard) == ([], True)


def test_replay_user_step_has_no_timers_and_serves_open_windows_at_the_end(clock: Clock) -> None:
    logic = UserLogic(ENGINE, GateSettings(length_ms=600_000), REPLAY, None)
    logic.on_batch([admitted(0, "a", 0)])
    assert logic.notify_at() is None
    (closed,), _ = logic.on_eof()
    assert closed.seq == steps.EOF_SEQ
    assert kinds([closed]) == [(0, "serve")]


def test_user_step_snapshot_restores_gate_state_and_timer(clock: Clock) -> None:
    settings = GateSettings(length_ms=600_000)
    logic = UserLogic(ENGINE, settings, LIVE, None)
    logic.on_batch([admitted(0, "a", 0)])
    restored = UserLogic(ENGINE, settings, LIVE, logic.snapshot())
    assert restored.notify_at() == logic.notify_at()
    closed, opened = restored.on_batch([admitted(1, "b", 11)])[0]
    assert kinds([closed, opened]) == [(0, "serve"), (1, "train")]
    assert closed.step.header.version == 1 and closed.step.header.history[0][0] == "a"


def test_forget_user_deletes_the_state_and_lets_the_key_go(clock: Clock) -> None:
    logic = UserLogic(ENGINE, GateSettings(), REPLAY, None)
    logic.on_batch([admitted(0, "a", 0)])
    (output,), discard = logic.on_batch([admitted(1, None, 1, FORGET_USER)])
    assert output.forget == ForgetUser("u1", output.forget.shard, T0 + 60_000)
    assert output.processed == 1 and output.step is None
    assert discard, "nothing of the user is kept"


def test_live_item_step_expires_after_idle_processing_time(clock: Clock) -> None:
    logic = ItemLogic(ENGINE, timedelta(days=90), None)
    message = ItemMessage("i1", T0, ("u1", 1), 0, links=(("i2", 1.0, None),), weight=1.0)
    (reply,), discard = logic.on_batch([(5, message)])
    assert reply[0] == 5 and isinstance(reply[1], RankPart) and not discard
    assert logic.notify_at() == START + timedelta(days=90)
    restored = ItemLogic(ENGINE, timedelta(days=90), logic.snapshot())
    assert restored.notify_at() == logic.notify_at()
    assert restored.state.snapshot() == logic.state.snapshot()
    assert logic.on_notify() == ([], True)


def header(user: str, version: int, parts: int) -> RankHeader:
    """A request that serves list ``version`` of ``user``."""
    return RankHeader(
        (user, version),
        0,
        T0,
        (("a", T0, 1.0, None),),
        0,
        ("a",),
        frozenset({"a"}),
        parts,
        version=version,
    )


def part(user: str, version: int, source: str) -> RankPart:
    return RankPart((user, version), 0, source, ("b",), (1.0,), long_weights=(1.0,))


def test_rank_step_answers_in_header_order_whatever_order_replies_come_in() -> None:
    logic = RankLogic(ENGINE, None)
    out, _ = logic.on_batch([(2, header("u2", 1, 2)), (1, header("u1", 1, 2))])
    assert list(out) == []
    # u2's request completes first, but u1's header came first (by input position).
    out, _ = logic.on_batch([(2, part("u2", 1, "a")), (2, part("u2", 1, TREND_KEY))])
    assert list(out) == []
    out, _ = logic.on_batch([(3, ForgetUser("u1", 0, T0 + 1)), (1, part("u1", 1, "a"))])
    assert list(out) == []
    restored = RankLogic(ENGINE, logic.snapshot())
    out, _ = restored.on_batch([(1, part("u1", 1, TREND_KEY))])
    released = list(out)
    assert [(seq, type(value).__name__, value.user_id) for seq, value in released] == [
        (1, "Recommendation", "u1"),
        (2, "Recommendation", "u2"),
        (3, "Tombstone", "u1"),
    ]
    assert released[2][1] == Tombstone("u1", T0 + 1)
    assert restored.on_eof() == ([], False)


def test_rank_step_refuses_to_end_with_a_request_still_waiting() -> None:
    logic = RankLogic(ENGINE, None)
    logic.on_batch([(1, header("u1", 1, 2))])
    with pytest.raises(RuntimeError, match="1 requests never completed"):
        logic.on_eof()
