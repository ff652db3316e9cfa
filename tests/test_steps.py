"""The dataflow's step logics on their own: live timers, snapshots, warm users, and the replica
step's input order."""

from __future__ import annotations

import dataclasses
import pickle
from collections.abc import Iterable
from datetime import timedelta
from functools import partial

import orjson
from fake_clock import START, Clock

from dataflows import steps
from dataflows.recommend import _admit, _to_replicas
from dataflows.routing import replica_of
from dataflows.steps import (
    InputOrder,
    Output,
    Packet,
    ReplicaLogic,
    Sequenced,
    Timers,
    UserLogic,
    UserOutput,
)
from operators.engine_config import EngineConfig
from operators.events import FORGET_USER, Event
from operators.intake import Admitted, DeadLetter, Origin, Raw, admit
from operators.item_model import Observation
from operators.messages import (
    ForgetUser,
    ObservationBlock,
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
ENGINE = EngineConfig(dimensions=4)
LIVE = Timers(timedelta(seconds=60), timedelta(days=30))
REPLAY = Timers(None, None)
REFRESHING = dataclasses.replace(LIVE, refresh=timedelta(days=1))
WINDOW = GateSettings(length_ms=600_000)


def admitted(seq: int, item: str | None, minute: int, kind: str = "view") -> Admitted:
    event = Event("u1", item, T0 + minute * 60_000, kind)
    return Admitted(seq, event, Origin("events.jsonl", seq + 1), event.to_json())


def kinds(outputs: Iterable[object]) -> list[tuple[int, list[str]]]:
    """(events processed, the message types sent) per output."""
    described = []
    for output in outputs:
        assert isinstance(output, UserOutput)
        described.append((output.processed, [type(m).__name__ for _, m in output.messages]))
    return described


def packet(messages: list[Sequenced[ReplicaMessage]], source: str = "replica-a") -> Packet:
    """What a worker's user step sends: ``messages``, and how far they go."""
    return Packet(source, max((seq for seq, _ in messages), default=-1), messages)


def sent(output: UserOutput) -> list[ReplicaMessage]:
    """The messages of one output, without their input positions."""
    return [message for _seq, message in output.messages]


def test_live_user_step_learns_at_once_then_serves_an_idle_window_then_expires(
    clock: Clock,
) -> None:
    logic = UserLogic(ENGINE, WINDOW, LIVE, None)
    out, discard = logic.on_batch([[admitted(0, "a", 0), admitted(1, "b", 1)]])
    assert kinds(out) == [(2, ["Train", "Observation", "Label", "Observation"])], "one per call"
    (output,) = out
    assert [seq for seq, _ in output.messages] == [0, 0, 1, 1], "each under its event's seq"
    assert output.users == 1, "one user's state created"
    assert not discard
    assert logic.notify_at() == START + timedelta(seconds=60)

    clock.now = START + timedelta(seconds=61)
    (closed,), discard = logic.on_notify()
    assert kinds([closed]) == [(0, ["Serve"])] and not discard
    (serve,) = sent(closed)
    assert isinstance(serve, Serve) and [entry[0] for entry in serve.history] == ["a", "b"]
    assert logic.notify_at() == START + timedelta(days=30), "then only the expiry remains"

    clock.now = START + timedelta(days=30, seconds=1)
    (expired,), discard = logic.on_notify()
    assert kinds([expired]) == [(0, ["ForgetUser"])] and expired.users == -1, "the user leaves"
    assert discard


def test_an_idle_users_list_is_served_again_after_one_two_four_days_until_expiry(
    clock: Clock,
) -> None:
    logic = UserLogic(ENGINE, WINDOW, REFRESHING, None)
    logic.on_batch([[admitted(0, "a", 0)]])
    versions = []
    moments = []
    while (due := logic.notify_at()) is not None:
        clock.now = due
        out, discard = logic.on_notify()
        moments.append(due - START)
        versions += [m.version for output in out for m in sent(output) if isinstance(m, Serve)]
        if discard:
            break
    days = [timedelta(days=n) for n in (1, 2, 4, 8, 16)]
    assert moments == [timedelta(seconds=60), *days, timedelta(days=30)]
    assert versions == [1, 2, 3, 4, 5, 6], "the close, then five refreshes, each a new version"

    clock.now = START
    again = UserLogic(ENGINE, WINDOW, REFRESHING, None)
    again.on_batch([[admitted(0, "a", 0)]])
    clock.now = START + timedelta(seconds=60)
    again.on_notify()
    clock.now = START + timedelta(days=1)
    again.on_notify()
    restored = UserLogic(ENGINE, WINDOW, REFRESHING, again.snapshot())
    assert restored.notify_at() == START + timedelta(days=2), "the schedule survives a restart"
    clock.now = START + timedelta(days=1, hours=1)
    restored.on_batch([[admitted(1, "b", 0)]])
    assert restored.notify_at() == clock.now + timedelta(seconds=60), "an event starts it afresh"


def test_without_close_after_idle_the_first_refresh_closes_the_open_window(clock: Clock) -> None:
    logic = UserLogic(ENGINE, WINDOW, dataclasses.replace(REFRESHING, close_after_idle=None), None)
    logic.on_batch([[admitted(0, "a", 0)]])
    assert logic.notify_at() == START + timedelta(days=1)
    clock.now = START + timedelta(days=1)
    (closed,), _ = logic.on_notify()
    assert kinds([closed]) == [(0, ["Serve"])] and not logic.gate.has_open_window
    assert logic.notify_at() == START + timedelta(days=2)


def test_an_expired_user_gets_a_tombstone_and_leaves_no_kept_list_in_the_replica(
    clock: Clock,
) -> None:
    logic = UserLogic(ENGINE, WINDOW, LIVE, None)
    replica = ModelReplica(ENGINE)

    def send(outputs: Iterable[object]) -> list[Recommendation | Tombstone]:
        emitted = []
        for output in outputs:
            assert isinstance(output, UserOutput)
            for message in sent(output):
                if (answer := replica.on_message(message)) is not None:
                    emitted.append(answer)
        return emitted

    send(logic.on_batch([[admitted(0, "a", 0), admitted(1, "b", 1)]])[0])
    clock.now = START + timedelta(seconds=61)
    send(logic.on_notify()[0])
    assert "u1" in replica.open, "the served list is kept to train on"
    clock.now = START + timedelta(days=30, seconds=1)
    assert send(logic.on_notify()[0]) == [Tombstone("u1", T0 + 60_000)]
    assert "u1" not in replica.open


def test_replay_user_step_has_no_timers_and_serves_open_windows_at_the_end(clock: Clock) -> None:
    logic = UserLogic(ENGINE, WINDOW, REPLAY, None)
    logic.on_batch([[admitted(0, "a", 0)]])
    assert logic.notify_at() is None
    (closed,), _ = logic.on_eof()
    assert [seq for seq, _ in closed.messages] == [steps.EOF_SEQ]
    assert kinds([closed]) == [(0, ["Serve"])]


def test_user_step_snapshot_restores_gate_state_and_timer(clock: Clock) -> None:
    logic = UserLogic(ENGINE, WINDOW, LIVE, None)
    logic.on_batch([[admitted(0, "a", 0)]])
    restored = UserLogic(ENGINE, WINDOW, LIVE, logic.snapshot())
    assert restored.notify_at() == logic.notify_at()
    (output,), _ = restored.on_batch([[admitted(1, "b", 11)]])
    assert kinds([output]) == [(1, ["Serve", "Train", "Observation"])], "the close comes first"
    serve = sent(output)[0]
    assert isinstance(serve, Serve) and serve.version == 1 and serve.history[0][0] == "a"


def test_forget_user_deletes_the_state_and_lets_the_key_go_at_the_end(clock: Clock) -> None:
    logic = UserLogic(ENGINE, GateSettings(), REPLAY, None)
    logic.on_batch([[admitted(0, "a", 0)]])
    (output,), discard = logic.on_batch([[admitted(1, None, 1, FORGET_USER)]])
    assert isinstance(output, UserOutput)
    assert sent(output) == [ForgetUser("u1", T0 + 60_000)] and output.processed == 1
    assert output.users == -1, "the user's state is gone"
    assert not discard and logic.snapshot()[:2] == ((None, None, b"", T0 + 60_000), None)
    (refused,), _ = logic.on_batch([[admitted(2, "b", 1)]])
    (stale,) = refused.dead
    assert not refused.messages and refused.processed == 0
    assert isinstance(stale, DeadLetter) and stale.reason.startswith("before forget_user")
    assert logic.on_eof() == ([], True), "nothing of the user is kept"


def test_the_live_forget_guard_ends_after_the_user_is_idle(clock: Clock) -> None:
    timers = Timers(None, timedelta(days=30), timedelta(hours=1))
    logic = UserLogic(ENGINE, GateSettings(), timers, None)
    logic.on_batch([[admitted(0, "a", 0), admitted(1, None, 1, FORGET_USER)]])
    assert logic.notify_at() == START + timedelta(hours=1)
    clock.now = START + timedelta(hours=1)
    assert logic.on_notify() == ([], True)


def test_a_warm_user_continues_from_the_pretrained_state_until_forgotten(clock: Clock) -> None:
    pretrained = UserState("u1")
    for minute, item in enumerate("xyz"):
        pretrained.on_event(Event("u1", item, T0 + minute, "view"), ENGINE)
    warm = {"u1": pretrained.snapshot()}
    logic = UserLogic(ENGINE, GateSettings(), REPLAY, None, warm)
    (output,), _ = logic.on_batch([[admitted(0, "a", 1)]])
    assert isinstance(output, UserOutput)
    train, _, serve = sent(output)
    assert isinstance(train, Train) and [entry[0] for entry in train.history] == ["x", "y", "z"]
    assert isinstance(serve, Serve) and serve.version == pretrained.version + 1
    logic.on_batch([[admitted(1, None, 2, FORGET_USER)]])
    (output,), _ = logic.on_batch([[admitted(2, "b", 3)]])
    assert isinstance(output, UserOutput)
    train = sent(output)[0]
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
    expected_out = [(seq, Output.of(answer)) for seq, answer in answers if answer is not None]

    # Packets from two workers arrive in either order, each in input order: here the odd
    # events' messages come first (each event's own messages stay in their order).
    odd = [pair for pair in in_order if pair[0] % 2]
    even = [pair for pair in in_order if not pair[0] % 2]
    logic = ReplicaLogic(ENGINE, None)
    out, discard = logic.on_batch([packet(odd), packet(even)])
    released = list(out)
    assert released == expected_out and not discard
    assert [value.tombstone for _, value in released] == [False] * 5 + [True]
    assert orjson.loads(released[-1][1].document) == {
        "user_id": "bob",
        "tombstone": True,
        "as_of": T0 + 5 * 60_000,
    }
    assert [seq for seq, _ in released] == sorted(seq for seq, _ in released)


def expected_outputs(messages: list[Sequenced[ReplicaMessage]]) -> list[Sequenced[Output]]:
    """What one replica emits applying ``messages`` in their order."""
    replica = ModelReplica(ENGINE)
    answers = [(seq, replica.on_message(message)) for seq, message in messages]
    return [(seq, Output.of(answer)) for seq, answer in answers if answer is not None]


def test_with_sources_a_replica_holds_messages_until_every_worker_sent_all_before_them() -> None:
    in_order = replica_messages()
    ahead = [pair for pair in in_order if pair[0] % 2]
    behind = [pair for pair in in_order if not pair[0] % 2]
    logic = ReplicaLogic(ENGINE, None, sources=["replica-a", "replica-b"])
    first, _ = logic.on_batch([packet(ahead, "replica-a")])
    assert list(first) == [], "the other worker has sent nothing yet"
    early = [pair for pair in behind if pair[0] < 3]
    second, _ = logic.on_batch([packet(early, "replica-b")])
    assert [seq for seq, _ in second] == [seq for seq, _ in expected_outputs(in_order) if seq <= 2]
    third, _ = logic.on_batch([packet(behind[len(early) :], "replica-b")])
    last, _ = logic.on_eof()
    released = [*second, *third, *last]
    assert released == expected_outputs(in_order), "as if one replica had it all in order"
    assert list(last), "what only the end of the input lets go"


def test_held_messages_are_part_of_the_snapshot() -> None:
    in_order = replica_messages()
    sources = ["replica-a", "replica-b"]
    logic = ReplicaLogic(ENGINE, None, sources=sources)
    logic.on_batch([packet(in_order, "replica-a")])
    items, ranker, held = logic.snapshot()
    assert held == in_order, "nothing from replica-b yet: all held"
    stored = pickle.loads(pickle.dumps((items, ranker, held)))
    restored = ReplicaLogic(ENGINE, stored, None, sources)
    assert list(restored.on_eof()[0]) == expected_outputs(in_order)
    older = ReplicaLogic(ENGINE, (items, ranker), None, sources)
    assert list(older.on_eof()[0]) == [], "a store written before messages were held has none"


def test_input_order_releases_each_batch_at_once_without_sources() -> None:
    order = InputOrder()
    assert order.release([Packet("a", 5, [(5, "late"), (1, "early")])]) == [
        (1, "early"),
        (5, "late"),
    ]
    assert order.held == [] and order.flush() == []


def test_replica_step_snapshot_resumes_the_same_replica() -> None:
    config = EngineConfig(dimensions=4)
    messages = replica_messages()
    logic = ReplicaLogic(config, None)
    logic.on_batch([packet(messages[:9])])
    restored = ReplicaLogic(config, logic.snapshot())
    later = [(9, Observation("mug", T0 + 10**6, 1.0, True, (("cup", T0, 1.0),)))]
    serve = [(10, Serve("cat", (("cup", T0 + 10**6, 1.0),), ("cup",), 1, T0 + 10**6))]
    for batch in (later, serve):
        assert restored.on_batch([packet(batch)])[0] == logic.on_batch([packet(batch)])[0]


def test_a_users_messages_keep_their_order_when_seq_comes_from_several_partitions() -> None:
    """Kafka offsets of two partitions: the forget (offset 100 of one) arrives before a newer
    event (offset 5 of another). Sorting by the raw offsets would serve the new list first and
    let the tombstone hide it."""
    user = UserLogic(ENGINE, GateSettings(), REPLAY, None)
    user.on_batch([[admitted(99, "a", 0)]])
    (forget,), _ = user.on_batch([[admitted(100, None, 1, FORGET_USER)]])
    (back,), _ = user.on_batch([[admitted(5, "b", 2)]])
    assert isinstance(forget, UserOutput) and isinstance(back, UserOutput)
    assert back.messages[0][0] >= forget.messages[-1][0], "a user's seq never goes down"
    batch: list[Sequenced[ReplicaMessage]] = [*forget.messages, *back.messages]
    released, _ = ReplicaLogic(ENGINE, None).on_batch([packet(batch)])
    assert [output.tombstone for _, output in released] == [True, False]


def test_admit_sends_dead_letters_and_one_packet_per_worker_of_each_users_events_in_order() -> None:
    def line(seq: int, user: str) -> Raw:
        event = Event(user, f"i{seq}", T0 + seq, "view")
        return Raw(seq, Origin("events.jsonl", seq + 1), event.to_json())

    users = ["ann", "bob", "cat", "dan", "eve", "fay"]
    batch = [line(seq, users[seq % len(users)]) for seq in range(30)]
    batch.insert(7, Raw(99, Origin("events.jsonl", 100), b"not json"))
    check = partial(admit, known_types=frozenset({"view"}), max_bytes=1024)
    keys = ["replica-a", "replica-b"]
    (letter, *routed) = _admit(check, keys, batch)
    assert isinstance(letter, DeadLetter) and letter.origin.offset == 100
    packets = dict(routed)  # type: ignore[arg-type]
    assert len(routed) == len(packets) == 2, "one packet per worker"
    for key, packet in packets.items():
        for user, events in packet.items():
            assert replica_of(user, keys) == key, "a user's events go to the user's worker"
            assert [event.seq for event in events] == list(range(users.index(user), 30, 6))
    (single,) = _admit(check, keys[:1], batch[:7])
    assert single[0] == "replica-a" and sum(map(len, single[1].values())) == 7


def test_other_replicas_get_a_batchs_observations_as_one_block_at_the_last_ones_position() -> None:
    messages = replica_messages()
    keys = ["replica-a", "replica-b"]
    batch = [
        ("ann", UserOutput("replica-a", messages[:4])),
        ("bob", UserOutput("replica-a", messages[4:])),
    ]
    packets = dict(_to_replicas(keys, batch))
    assert packets["replica-a"] == packet(messages), "the own replica takes every message as it is"
    observations = [(seq, message) for seq, message in messages if isinstance(message, Observation)]
    assert packets["replica-b"].through == packets["replica-a"].through == messages[-1][0]
    ((seq, block),) = packets["replica-b"].messages
    assert isinstance(block, ObservationBlock) and seq == observations[-1][0]
    copied = pickle.loads(pickle.dumps(block))
    assert list(copied) == [tuple(observation) for _seq, observation in observations]
    assert any(observation.recent for _seq, observation in observations), "some have recent items"
    assert dict(_to_replicas(keys[:1], [("ann", UserOutput("replica-a", messages))])) == {
        "replica-a": packet(messages)
    }, "one replica: no block"
    serves = [(seq, message) for seq, message in messages if isinstance(message, Serve)]
    assert dict(_to_replicas(keys, [("ann", UserOutput("replica-a", serves))])) == {
        "replica-a": packet(serves),
        "replica-b": Packet("replica-a", serves[-1][0], []),
    }, "no observation: the other replica still learns how far the worker went"


def test_a_replica_learns_a_block_as_it_learns_its_observations_one_by_one() -> None:
    observations = [
        message for _seq, message in replica_messages() if isinstance(message, Observation)
    ]
    one_by_one, blocked = ReplicaLogic(ENGINE, None), ReplicaLogic(ENGINE, None)
    one_by_one.on_batch([packet(list(enumerate(observations)))])
    blocked.on_batch([packet([(len(observations) - 1, ObservationBlock.of(observations))])])
    assert len(blocked.replica.items) == len(one_by_one.replica.items) == 3
    expected, got = one_by_one.snapshot(), blocked.snapshot()
    assert pickle.dumps(got) == pickle.dumps(expected)
