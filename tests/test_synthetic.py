from __future__ import annotations

import doctest
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from operators import jsonl, synthetic
from operators.events import Event, parse_event
from operators.synthetic import GeneratorConfig, SyntheticStream

CONFIG = GeneratorConfig(users=300, items=400, events=40_000, seed=7, categories=10)


@pytest.fixture(scope="module")
def stream() -> SyntheticStream:
    return synthetic.generate(CONFIG)


def in_session_order(stream: SyntheticStream) -> np.ndarray:
    return np.lexsort((stream.ts, stream.session))


def test_docstring_example_runs() -> None:
    assert doctest.testmod(synthetic).failed == 0


def test_same_seed_same_stream_other_seed_other_stream() -> None:
    config = replace(CONFIG, events=2_000)
    first = list(synthetic.iter_lines(config))
    assert first == list(synthetic.iter_lines(config))
    assert first != list(synthetic.iter_lines(replace(config, seed=8)))


def test_written_file_has_the_events_in_time_order_as_valid_events(tmp_path: Path) -> None:
    config = replace(CONFIG, events=3_000)
    path = tmp_path / "stream.jsonl.gz"
    assert synthetic.write_stream(config, path) == 3_000
    events = [parse_event(raw) for raw in jsonl.read_lines(path)]
    assert all(isinstance(event, Event) for event in events)
    valid = [event for event in events if isinstance(event, Event)]
    assert [event.ts for event in valid] == sorted(event.ts for event in valid)
    assert len({event.event_id for event in valid}) == 3_000
    assert {event.type for event in valid} == set(synthetic.EVENT_TYPES)
    first = valid[0]
    assert first.title == f"{first.category} item {first.item_id.removeprefix('i')}"
    assert valid[0].ts >= synthetic.START_MS


def test_exact_event_count_even_when_tiny_or_empty() -> None:
    for events in (0, 1, 17):
        assert len(synthetic.generate(replace(CONFIG, events=events)).ts) == events


def test_drifting_users_change_categories_at_the_drift_point(stream: SyntheticStream) -> None:
    category = stream.item_category[stream.item]
    before = stream.ts < stream.drift_ts
    assert stream.drift_ts == synthetic.drift_timestamp(CONFIG)

    def overlap(user: int) -> float | None:
        mine = stream.user == user
        old, new = category[mine & before], category[mine & ~before]
        if min(len(old), len(new)) < 30:
            return None
        old_share = np.bincount(old, minlength=CONFIG.categories) / len(old)
        new_share = np.bincount(new, minlength=CONFIG.categories) / len(new)
        return float(np.minimum(old_share, new_share).sum())

    def mean_overlap(users: np.ndarray) -> float:
        values = [value for user in users if (value := overlap(int(user))) is not None]
        assert len(values) >= 20
        return float(np.mean(values))

    drifting = np.flatnonzero(stream.drifting)
    stable = np.flatnonzero(~stream.drifting)
    assert mean_overlap(drifting) < 0.3 < 0.6 < mean_overlap(stable)


def test_drift_share_decides_who_drifts() -> None:
    small = replace(CONFIG, events=100)
    assert not synthetic.generate(replace(small, drift_share=0.0)).drifting.any()
    assert synthetic.generate(replace(small, drift_share=1.0)).drifting.all()


def test_sessions_are_bursts_of_one_user(stream: SyntheticStream) -> None:
    order = in_session_order(stream)
    session, user, ts = stream.session[order], stream.user[order], stream.ts[order]
    same_session = session[1:] == session[:-1]
    assert (user[1:] == user[:-1])[same_session].all()
    within = np.diff(ts)[same_session]
    assert np.median(within) < 60_000  # seconds apart

    by_user = np.lexsort((stream.ts, stream.user))
    user, session, ts = stream.user[by_user], stream.session[by_user], stream.ts[by_user]
    next_session = (user[1:] == user[:-1]) & (session[1:] != session[:-1])
    assert np.median(np.diff(ts)[next_session]) > 3_600_000  # hours apart
    assert len(np.unique(stream.session)) < len(stream.ts) / 4


def successor_share(stream: SyntheticStream) -> float:
    """Share of consecutive views in a session that go to one of the previous item's successors."""
    order = in_session_order(stream)
    views = order[stream.type[order] == 0]
    consecutive = stream.session[views][1:] == stream.session[views][:-1]
    previous, following = stream.item[views][:-1], stream.item[views][1:]
    hits = (stream.successors[previous] == following[:, None]).any(axis=1)
    return float(hits[consecutive].mean())


def test_items_have_likely_successors(stream: SyntheticStream) -> None:
    assert stream.successors.shape == (CONFIG.items, CONFIG.successors)
    assert not (stream.successors == np.arange(CONFIG.items)[:, None]).any()
    assert successor_share(stream) > 0.4
    assert successor_share(synthetic.generate(replace(CONFIG, follow=0.0))) < 0.2


def test_funnel_steps_follow_the_view_of_the_same_item(stream: SyntheticStream) -> None:
    order = in_session_order(stream)
    item, step = stream.item[order], stream.type[order].astype(int)
    later_step = step[1:] > 0
    assert (item[1:] == item[:-1])[later_step].all()
    assert (step[1:] == step[:-1] + 1)[later_step].all()
    counts = np.bincount(stream.type, minlength=4)
    assert counts[0] > counts[1] > counts[2] > counts[3] > 0


def test_items_and_users_arrive_over_time(stream: SyntheticStream) -> None:
    assert (stream.ts >= stream.item_release[stream.item]).all()
    assert (stream.ts >= stream.user_start[stream.user]).all()
    late = synthetic.START_MS + CONFIG.span_ms // 2
    late_items = np.unique(stream.item[stream.item_release[stream.item] > late])
    late_users = np.unique(stream.user[stream.user_start[stream.user] > late])
    assert len(late_items) > 20 and len(late_users) > 10


def test_trending_items_spike_during_their_burst(stream: SyntheticStream) -> None:
    length = round(CONFIG.trend_days * 86_400_000)
    assert len(stream.trend_item) == CONFIG.trends
    for item, start in zip(stream.trend_item, stream.trend_start, strict=True):
        during = (stream.ts >= start) & (stream.ts < start + length)
        share_during = (stream.item[during] == item).mean()
        share_outside = (stream.item[~during] == item).mean()
        # At its peak a burst takes trend_share of fresh picks (half that on average), and
        # about half of all visits are fresh picks.
        assert share_during > share_outside + CONFIG.trend_share / 8


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"drift_share": 1.5}, "drift_share must be between 0 and 1"),
        ({"funnel": (0.5, 2.0, 0.5)}, r"funnel\[1\] must be between 0 and 1"),
        ({"categories": 1}, "categories must be between 2 and items"),
        ({"users": 0}, "users and items must be at least 1"),
    ],
)
def test_bad_config_is_refused_with_the_field_named(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        replace(CONFIG, **change)
