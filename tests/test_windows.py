"""The per-user gate: de-duplication, lateness and event-time windows."""

from __future__ import annotations

import pickle

from hypothesis import given
from hypothesis import strategies as st

from operators.events import FORGET_USER, Event
from operators.windows import Dropped, Forget, GateSettings, UserGate, Window

MINUTE = 60_000
T0 = 1_700_000_000_000 - 1_700_000_000_000 % (10 * MINUTE)


def event(item: str, ts: int, event_id: str | None = None) -> Event:
    return Event("u1", item, ts, "view", event_id=event_id)


def items(outputs: list) -> list[list[str]]:
    return [[e.item_id for e in out.events] for out in outputs if isinstance(out, Window)]


def test_length_zero_emits_every_event_as_its_own_window_at_once() -> None:
    gate = UserGate()
    settings = GateSettings()
    assert items(gate.offer(event("a", T0), settings)) == [["a"]]
    assert items(gate.offer(event("b", T0), settings)) == [["b"]]
    assert gate.flush() == []


def test_duplicate_event_ids_are_dropped_with_the_id_in_the_reason() -> None:
    gate = UserGate()
    settings = GateSettings(ids_per_user=10)
    gate.offer(event("a", T0, "e1"), settings)
    (dropped,) = gate.offer(event("b", T0 + 1, "e1"), settings)
    assert dropped == Dropped(event("b", T0 + 1, "e1"), "duplicate event_id e1")
    assert items(gate.offer(event("c", T0 + 2, "e2"), settings)) == [["c"]]
    assert items(gate.offer(event("d", T0 + 3), settings)) == [["d"]]
    assert items(gate.offer(event("d", T0 + 3), settings)) == [["d"]], "no id, no duplicate"


def test_remembered_ids_are_bounded_per_user() -> None:
    gate = UserGate()
    settings = GateSettings(ids_per_user=2)
    for number in range(3):
        gate.offer(event("a", T0 + number, f"e{number}"), settings)
    assert len(gate.snapshot()[4]) == 2
    # e0 was forgotten, so it passes again; e2 is still remembered.
    assert isinstance(gate.offer(event("a", T0 + 5, "e0"), settings)[0], Window)
    assert isinstance(gate.offer(event("a", T0 + 6, "e2"), settings)[0], Dropped)


def test_zero_ids_per_user_turns_deduplication_off() -> None:
    gate = UserGate()
    settings = GateSettings(ids_per_user=0)
    gate.offer(event("a", T0, "e1"), settings)
    assert isinstance(gate.offer(event("a", T0, "e1"), settings)[0], Window)
    assert gate.is_empty is False


def test_late_events_within_the_allowance_are_processed_and_counted() -> None:
    gate = UserGate()
    settings = GateSettings(allowed_lateness_ms=MINUTE)
    gate.offer(event("a", T0 + 10 * MINUTE), settings)
    (window,) = gate.offer(event("b", T0 + 9 * MINUTE), settings)
    assert window == Window((event("b", T0 + 9 * MINUTE),), late=1)
    # The newest timestamp is still the first event's: lateness is measured against it.
    (dropped,) = gate.offer(event("c", T0 + 8 * MINUTE + 30_000), settings)
    assert dropped.reason == "late by 90 s (allowed 60 s)"
    (dropped,) = gate.offer(event("c", T0 + 9 * MINUTE - 1), settings)
    assert dropped.reason == "late by 60.001 s (allowed 60 s)"


def test_tumbling_window_closes_when_an_event_reaches_its_end() -> None:
    gate = UserGate()
    settings = GateSettings(length_ms=10 * MINUTE)
    assert gate.offer(event("a", T0), settings) == []
    assert gate.offer(event("b", T0 + 10 * MINUTE - 1), settings) == []
    assert gate.has_open_window
    assert items(gate.offer(event("c", T0 + 10 * MINUTE), settings)) == [["a", "b"]]
    assert items(gate.flush()) == [["c"]]
    assert not gate.has_open_window
    assert gate.flush() == []


def test_late_events_join_the_open_window_and_never_close_it() -> None:
    gate = UserGate()
    settings = GateSettings(length_ms=10 * MINUTE, allowed_lateness_ms=60 * MINUTE)
    gate.offer(event("a", T0), settings)
    assert items(gate.offer(event("b", T0 + 25 * MINUTE), settings)) == [["a"]]
    assert gate.offer(event("c", T0 + 5 * MINUTE), settings) == []
    (window,) = gate.flush()
    assert [e.item_id for e in window.events] == ["b", "c"]
    assert window.late == 1


def test_forget_user_closes_the_window_and_resets_everything() -> None:
    gate = UserGate()
    settings = GateSettings(length_ms=10 * MINUTE, ids_per_user=5)
    gate.offer(event("a", T0 + 30 * MINUTE, "e1"), settings)
    forget = Event("u1", None, T0 + 31 * MINUTE, FORGET_USER)
    outputs = gate.offer(forget, settings)
    assert items(outputs) == [["a"]]
    assert outputs[-1] == Forget(forget)
    assert gate.is_empty
    # Nothing is remembered: the same id and an older timestamp are accepted as new.
    assert gate.offer(event("b", T0, "e1"), settings) == []
    assert items(gate.flush()) == [["b"]]


def test_snapshot_is_compact_immutable_and_restores_the_same_behaviour() -> None:
    gate = UserGate()
    settings = GateSettings(length_ms=10 * MINUTE, allowed_lateness_ms=MINUTE, ids_per_user=3)
    gate.offer(event("a", T0, "e1"), settings)
    gate.offer(event("b", T0 + MINUTE, "e2"), settings)
    snapshot = gate.snapshot()
    gate.offer(event("c", T0 + 2 * MINUTE, "e3"), settings)
    assert snapshot == UserGate.restore(snapshot).snapshot(), "snapshot must not alias state"
    assert len(pickle.dumps(snapshot)) < 400
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
    """Accounting: each offered event ends in one window, one Forget or one Dropped."""
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
    windows = [out for out in outputs if isinstance(out, Window)]
    out_count = sum(len(w.events) for w in windows) + sum(
        not isinstance(out, Window) for out in outputs
    )
    assert out_count == len(stream)
    assert all(w.events for w in windows)
    assert all(0 <= w.late <= len(w.events) for w in windows)
    if length == 0:
        assert all(len(w.events) == 1 for w in windows)
