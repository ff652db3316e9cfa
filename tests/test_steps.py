"""The dataflow's step logics on their own: live timers, snapshots, warm users, and the replica
step's input order."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

import pytest

from dataflows import steps
from dataflows.steps import ReplicaLogic, Sequenced, Timers, UserLogic, UserOutput
from operators.engine_config import EngineConfig
from operators.events import FORGET_USER, Event
from operators.intake import Admitted, Origin
from operators.item_model import Observation
from operators.messages import (
    ForgetUser,
    Recommendation,
    ReplicaMessage,
    Serve,
    Tombstone,
    Train,
)
from operators.replica import ModelReplica
from operators.user_state import UserState
from operators.windows import GateSettings

T0 = 1_700_000_000_000
START = datetime(2026, 1, 1, tzinfo=UTC)
ENGINE = EngineConfig(dimensions=4)
LIVE = Timers(timedelta(seconds=60), timedelta(days=30))
REPLAY = Timers(None, None)
WINDOW = GateSettings(length_ms=600_000)


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


def kinds(outputs: Iterable[object]) -> list[tuple[int, list[str]]]:
    """(events processed, the message types sent) per output."""
    described = []
    for output in outputs:
        assert isinstance(output, UserOutput)
        described.append((output.processed, [type(m).__name__ for m in output.messages]))
    return described


def test_live_user_step_learns_at_once_then_serves_an_idle_window_then_expires(
    clock: Clock,
) -> None:
    logic = UserLogic(ENGINE, WINDOW, LIVE, None)
    out, discard = logic.on_batch([admitted(0, "a", 0), admitted(1, "b", 1)])
    assert kinds(out) == [(1, ["Train", "Observation"]), (1, ["Label", "Observation"])]
    assert [output.users for output in out] == [1, 0], "one user's state created"
    assert not discard
    assert logic.notify_at() == START + timedelta(seconds=60)

    clock.now = START + timedelta(seconds=61)
    (closed,), discard = logic.on_notify()
    assert kinds([closed]) == [(0, ["Serve"])] and not discard
    (serve,) = closed.messages
    assert isinstance(serve, Serve) and [entry[0] for entry in serve.history] == ["a", "b"]
    assert logic.notify_at() == START + timedelta(days=30), "then only the expiry remains"

    clock.now = START + timedelta(days=30, seconds=1)
    (expired,), discard = logic.on_notify()
    assert kinds([expired]) == [(0, [])] and expired.users == -1, "the user leaves the state"
    assert discard


def test_replay_user_step_has_no_timers_and_serves_open_windows_at_the_end(clock: Clock) -> None:
    logic = UserLogic(ENGINE, WINDOW, REPLAY, None)
    logic.on_batch([admitted(0, "a", 0)])
    assert logic.notify_at() is None
    (closed,), _ = logic.on_eof()
    assert closed.seq == steps.EOF_SEQ
    assert kinds([closed]) == [(0, ["Serve"])]


def test_user_step_snapshot_restores_gate_state_and_timer(clock: Clock) -> None:
    logic = UserLogic(ENGINE, WINDOW, LIVE, None)
    logic.on_batch([admitted(0, "a", 0)])
    restored = UserLogic(ENGINE, WINDOW, LIVE, logic.snapshot())
    assert restored.notify_at() == logic.notify_at()
    (closed, opened), _ = restored.on_batch([admitted(1, "b", 11)])
    assert kinds([closed, opened]) == [(0, ["Serve"]), (1, ["Train", "Observation"])]
    (serve,) = closed.messages
    assert isinstance(serve, Serve) and serve.version == 1 and serve.history[0][0] == "a"


def test_forget_user_deletes_the_state_and_lets_the_key_go(clock: Clock) -> None:
    logic = UserLogic(ENGINE, GateSettings(), REPLAY, None)
    logic.on_batch([admitted(0, "a", 0)])
    (output,), discard = logic.on_batch([admitted(1, None, 1, FORGET_USER)])
    assert isinstance(output, UserOutput)
    assert output.messages == [ForgetUser("u1", T0 + 60_000)] and output.processed == 1
    assert discard, "nothing of the user is kept"


def test_a_warm_user_continues_from_the_pretrained_state_until_forgotten(clock: Clock) -> None:
    pretrained = UserState("u1")
    for minute, item in enumerate("xyz"):
        pretrained.on_event(Event("u1", item, T0 + minute, "view"), ENGINE)
    warm = {"u1": pretrained.snapshot()}
    logic = UserLogic(ENGINE, GateSettings(), REPLAY, None, warm)
    (output,), _ = logic.on_batch([admitted(0, "a", 1)])
    assert isinstance(output, UserOutput)
    train, _, serve = output.messages
    assert isinstance(train, Train) and [entry[0] for entry in train.history] == ["x", "y", "z"]
    assert isinstance(serve, Serve) and serve.version == pretrained.version + 1
    logic.on_batch([admitted(1, None, 2, FORGET_USER)])
    (output,), _ = logic.on_batch([admitted(2, "b", 3)])
    assert isinstance(output, UserOutput)
    train = output.messages[0]
    assert isinstance(train, Train) and train.history == (), "forgotten means forgotten"


def replica_messages() -> list[Sequenced[ReplicaMessage]]:
    """Two users' events in input order, each event's messages under its input position."""
    users = {name: UserState(name) for name in ("ann", "bob")}
    sequenced: list[Sequenced[ReplicaMessage]] = []
    for seq, (user, item) in enumerate(
        [("ann", "tea"), ("bob", "tea"), ("ann", "jam"), ("bob", "cup"), ("ann", "cup")]
    ):
        event = Event(user, item, T0 + seq * 60_000, "purchase")
        sequenced.extend((seq, message) for message in users[user].on_event(event, ENGINE))
    sequenced.append((5, ForgetUser("bob", T0 + 5 * 60_000)))
    return sequenced


def test_replica_step_applies_each_batch_in_input_order_whatever_order_it_arrives_in() -> None:
    in_order = replica_messages()
    expected = ModelReplica(ENGINE)
    answers = [(seq, expected.on_message(message)) for seq, message in in_order]
    expected_out = [(seq, answer) for seq, answer in answers if answer is not None]

    # Bytewax hands a batch over grouped by where it came from, not in input order: here the
    # odd events' messages come first (each event's own messages stay in their order).
    shuffled = sorted(in_order, key=lambda pair: pair[0] % 2 == 0)
    logic = ReplicaLogic(ENGINE, None)
    out, discard = logic.on_batch(list(shuffled))
    released = list(out)
    assert released == expected_out and not discard
    assert [type(value) for _, value in released] == [Recommendation] * 5 + [Tombstone]
    assert [seq for seq, _ in released] == sorted(seq for seq, _ in released)


def test_replica_step_snapshot_resumes_the_same_replica() -> None:
    config = EngineConfig(dimensions=4)
    messages = replica_messages()
    logic = ReplicaLogic(config, None)
    logic.on_batch(messages[:9])
    restored = ReplicaLogic(config, logic.snapshot())
    later = [(9, Observation("mug", T0 + 10**6, 1.0, True, (("cup", T0, 1.0),)))]
    serve = [(10, Serve("cat", (("cup", T0 + 10**6, 1.0),), ("cup",), 1, T0 + 10**6))]
    for batch in (later, serve):
        assert restored.on_batch(list(batch))[0] == logic.on_batch(list(batch))[0]
