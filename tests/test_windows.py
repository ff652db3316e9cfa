"""The per-user gate: de-duplication, lateness and event-time windows."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from operators.events import FORGET_USER, Event
from operators.windows import (
    DIGEST_SIZE,
    Dropped,
    Forget,
    GateSettings,
    Learn,
    Serve,
    UserGate,
    _holds,
    id_digest,
)

MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % (10 * MINUTE)


def event(item: str, ts: int, event_id: str | None = None) -> Event:
    return Event("u1", item, ts, "view", event_id=event_id)


def trace(outputs: list) -> list[str]:
    """Outputs as short words: "a+tsl" is event a learned (t: trains, s: serves, l: late)."""
    words = []
    for out in outputs:
        if isinstance(out, Learn):
            flags = "t" * out.train + "s" * out.serve + "l" * out.late
            words.append(f"{out.event.item_id}+{flags}")
        else:
            words.append(type(out).__name__.lower())
    return words


def test_length_zero_learns_trains_and_serves_every_event_at_once() -> None:
    gate = UserGate()
    settings = GateSettings()
    assert trace(gate.offer(event("a", T0), settings)) == ["a+ts"]
    assert trace(gate.offer(event("b", T0), settings)) == ["b+ts"]
    assert gate.flush() == []


def test_duplicate_event_ids_are_dropped_with_the_id_in_the_reason() -> None:
    gate = UserGate()
    settings = GateSettings(ids_per_user=10)
    gate.offer(event("a", T0, "e1"), settings)
    (dropped,) = gate.offer(event("b", T0 + 1, "e1"), settings)
    assert dropped == Dropped(event("b", T0 + 1, "e1"), "duplicate event_id e1")
    assert trace(gate.offer(event("c", T0 + 2, "e2"), settings)) == ["c+ts"]
    assert trace(gate.offer(event("d", T0 + 3), settings)) == ["d+ts"]
    assert trace(gate.offer(event("d", T0 + 3), settings)) == ["d+ts"], "no id, no duplicate"


def test_remembered_ids_are_bounded_per_user() -> None:
    gate = UserGate()
    settings = GateSettings(ids_per_user=2)
    for number in range(3):
        gate.offer(event("a", T0 + number, f"e{number}"), settings)
    assert len(gate.snapshot()[2]) == 2 * DIGEST_SIZE
    # e0 was forgotten, so it passes again; e2 is still remembered.
    assert isinstance(gate.offer(event("a", T0 + 5, "e0"), settings)[0], Learn)
    assert isinstance(gate.offer(event("a", T0 + 6, "e2"), settings)[0], Dropped)


def test_a_repeat_is_caught_among_a_full_set_of_ids_and_after_an_old_store() -> None:
    gate = UserGate()
    settings = GateSettings(ids_per_user=100)
    for number in range(150):
        gate.offer(event("a", T0 + number, f"evt-{number:08d}"), settings)
    assert isinstance(gate.offer(event("a", T0 + 200, "evt-00000050"), settings)[0], Dropped)
    assert isinstance(gate.offer(event("a", T0 + 201, "evt-00000049"), settings)[0], Learn)
    # A store written before the digests holds the ids themselves.
    old = UserGate.restore((None, T0, ("e1", "e2"), None))
    assert isinstance(old.offer(event("a", T0 + 1, "e2"), settings)[0], Dropped)
    assert old.snapshot()[2] == id_digest("e1") + id_digest("e2")


def test_a_digest_straddling_two_remembered_ones_is_not_a_duplicate() -> None:
    first, second = id_digest("e1"), id_digest("e2")
    straddling = first[DIGEST_SIZE // 2 :] + second[: DIGEST_SIZE // 2]
    assert _holds(first + second, second) and not _holds(first + second, straddling)
    assert not _holds(b"", first)


def test_zero_ids_per_user_turns_deduplication_off() -> None:
    gate = UserGate()
    settings = GateSettings(ids_per_user=0)
    gate.offer(event("a", T0, "e1"), settings)
    assert isinstance(gate.offer(event("a", T0, "e1"), settings)[0], Learn)
    assert gate.is_empty is False


def test_late_events_within_the_allowance_are_processed_and_counted() -> None:
    gate = UserGate()
    settings = GateSettings(allowed_lateness_ms=MINUTE)
    gate.offer(event("a", T0 + 10 * MINUTE), settings)
    assert trace(gate.offer(event("b", T0 + 9 * MINUTE), settings)) == ["b+tsl"]
    # The newest timestamp is still the first event's: lateness is measured against it.
    (dropped,) = gate.offer(event("c", T0 + 8 * MINUTE + 30_000), settings)
    assert dropped.reason == "late by 90 s (allowed 60 s)"
    (dropped,) = gate.offer(event("c", T0 + 9 * MINUTE - 1), settings)
    assert dropped.reason == "late by 60.001 s (allowed 60 s)"


def test_tumbling_window_learns_at_once_and_serves_when_an_event_reaches_its_end() -> None:
    gate = UserGate()
    settings = GateSettings(length_ms=10 * MINUTE)
    assert trace(gate.offer(event("a", T0), settings)) == ["a+t"]
    assert trace(gate.offer(event("b", T0 + 10 * MINUTE - 1), settings)) == ["b+"]
    assert gate.has_open_window
    assert trace(gate.offer(event("c", T0 + 10 * MINUTE), settings)) == ["serve", "c+t"]
    assert gate.flush() == [Serve()]
    assert not gate.has_open_window
    assert gate.flush() == []


def test_close_before_serves_only_a_window_that_has_ended() -> None:
    gate = UserGate()
    settings = GateSettings(length_ms=10 * MINUTE)
    assert gate.close_before(T0, settings) == [], "no window open"
    gate.offer(event("a", T0 + MINUTE), settings)
    assert gate.close_before(T0 + 9 * MINUTE, settings) == []
    assert gate.close_before(T0 + 10 * MINUTE, settings) == [Serve()]
    assert trace(gate.offer(event("b", T0 + 11 * MINUTE), settings)) == ["b+t"]


def test_late_events_join_the_open_window_and_never_close_it() -> None:
    gate = UserGate()
    settings = GateSettings(length_ms=10 * MINUTE, allowed_lateness_ms=60 * MINUTE)
    gate.offer(event("a", T0), settings)
    assert trace(gate.offer(event("b", T0 + 25 * MINUTE), settings)) == ["serve", "b+t"]
    assert trace(gate.offer(event("c", T0 + 5 * MINUTE), settings)) == ["c+l"]
    assert gate.flush() == [Serve()]


def test_forget_user_drops_the_window_and_resets_everything() -> None:
    gate = UserGate()
    settings = GateSettings(length_ms=10 * MINUTE, ids_per_user=5)
    gate.offer(event("a", T0 + 30 * MINUTE, "e1"), settings)
    forget = Event("u1", None, T0 + 31 * MINUTE, FORGET_USER)
    assert gate.offer(forget, settings) == [Forget(forget)]
    assert gate.snapshot() == (None, None, b"", forget.ts), "only the forget's ts is kept"
    # An event from before the request is refused, however little late; the same event id
    # later is new.
    (stale,) = gate.offer(event("b", forget.ts, "e2"), settings)
    assert isinstance(stale, Dropped)
    assert stale.reason == f"before forget_user at ts {forget.ts}"
    assert trace(gate.offer(event("b", forget.ts + 1, "e1"), settings)) == ["b+t"]
    assert gate.flush() == [Serve()]


def test_the_forget_guard_ends_and_leaves_nothing() -> None:
    gate = UserGate()
    settings = GateSettings(length_ms=0, allowed_lateness_ms=60 * MINUTE)
    gate.offer(Event("u1", None, T0, FORGET_USER), settings)
    assert gate.guards_forget and not gate.is_empty
    gate.end_forget_guard()
    assert gate.is_empty
    assert trace(gate.offer(event("a", T0 - MINUTE), settings)) == ["a+ts"]


def test_snapshot_is_compact_immutable_and_restores_the_same_behaviour() -> None:
    gate = UserGate()
    settings = GateSettings(length_ms=10 * MINUTE, allowed_lateness_ms=MINUTE, ids_per_user=3)
    gate.offer(event("a", T0, "e1"), settings)
    gate.offer(event("b", T0 + MINUTE, "e2"), settings)
    snapshot = gate.snapshot()
    gate.offer(event("c", T0 + 2 * MINUTE, "e3"), settings)
    assert snapshot == UserGate.restore(snapshot).snapshot(), "snapshot must not alias state"
    assert len(pickle.dumps(snapshot)) < 150
    restored = UserGate.restore(snapshot)
    assert isinstance(restored.offer(event("x", T0 + 2 * MINUTE, "e1"), settings)[0], Dropped)
    restored.offer(event("c", T0 + 2 * MINUTE, "e3"), settings)
    assert restored.snapshot() == gate.snapshot()


offers = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=30 * MINUTE),
        st.sampled_from([None, "e1", "e2", "e3", "e4"]),
        st.booleans(),
    ),
    max_size=40,
)


@given(
    offers,
    st.sampled_from([0, MINUTE, 10 * MINUTE]),
    st.sampled_from([0, 5 * MINUTE]),
    st.integers(min_value=0, max_value=3),
)
def test_every_event_leaves_exactly_once(
    stream: list[tuple[int, str | None, bool]], length: int, lateness: int, ids: int
) -> None:
    """Accounting: each offered event leaves once, learned, forgotten or dropped; a window is
    served only after an event opened it, and at most once."""
    gate = UserGate()
    settings = GateSettings(length_ms=length, allowed_lateness_ms=lateness, ids_per_user=ids)
    outputs = []
    for number, (offset, event_id, forget) in enumerate(stream):
        if forget:
            offered = Event("u1", None, T0 + offset, FORGET_USER)
        else:
            offered = event(str(number), T0 + offset, event_id)
        outputs.extend(gate.offer(offered, settings))
    outputs.extend(gate.flush())
    assert sum(not isinstance(out, Serve) for out in outputs) == len(stream)
    open_window = False
    for out in outputs:
        if isinstance(out, Learn):
            assert out.train == (length == 0 or not open_window)
            assert out.serve == (length == 0)
            open_window = length > 0
        elif isinstance(out, Serve):
            assert open_window
            open_window = False
        elif isinstance(out, Forget):
            open_window = False
    assert not open_window
