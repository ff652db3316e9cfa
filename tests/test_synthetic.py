from __future__ import annotations

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


def mean_overlap(stream: SyntheticStream, drifting: bool) -> float:
    """The mean over drifting (or stable) users of how much their category mix before and after
    the drift point overlap (1: the same mix)."""
    category = stream.item_category[stream.item]
    before = stream.ts < stream.drift_ts
    categories = len(np.unique(stream.item_category))
    values = []
    for user in np.flatnonzero(stream.drifting == drifting):
        mine = stream.user == user
        old, new = category[mine & before], category[mine & ~before]
        if min(len(old), len(new)) >= 30:
            old_share = np.bincount(old, minlength=categories) / len(old)
            new_share = np.bincount(new, minlength=categories) / len(new)
            values.append(float(np.minimum(old_share, new_share).sum()))
    assert len(values) >= 20
    return float(np.mean(values))


def test_drifting_users_change_categories_at_the_drift_point(stream: SyntheticStream) -> None:
    assert stream.drift_ts == synthetic.drift_timestamp(CONFIG)
    assert mean_overlap(stream, drifting=True) < 0.3 < 0.6 < mean_overlap(stream, drifting=False)
    assert stream.drifted_successors is stream.successors


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


def follows_successor(stream: SyntheticStream, table: np.ndarray) -> tuple[np.ndarray, ...]:
    """For each view after another in its session: whether it is one of the previous item's
    successors in ``table``, and its index in the stream."""
    order = in_session_order(stream)
    views = order[stream.type[order] == 0]
    consecutive = stream.session[views][1:] == stream.session[views][:-1]
    previous, following = stream.item[views][:-1], stream.item[views][1:]
    hits = (table[previous] == following[:, None]).any(axis=1)
    return hits[consecutive], views[1:][consecutive]


def successor_share(stream: SyntheticStream) -> float:
    """Share of consecutive views in a session that go to one of the previous item's successors."""
    return float(follows_successor(stream, stream.successors)[0].mean())


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


def test_the_sessions_shape_is_the_default_stream() -> None:
    assert synthetic.shape_config("sessions") == GeneratorConfig()
    assert synthetic.shape_config("sessions", seed=3) == GeneratorConfig(seed=3)
    with pytest.raises(ValueError, match="unknown shape 'nope' \\(known: sessions, ratings"):
        synthetic.shape_config("nope")


@pytest.mark.parametrize("shape", list(synthetic.SHAPES))
def test_every_shape_gives_valid_events_deterministically(shape: str) -> None:
    config = synthetic.shape_config(shape, events=2_000)
    lines = list(synthetic.iter_lines(config))
    assert len(lines) == 2_000 and lines == list(synthetic.iter_lines(config))
    events = [parse_event(line) for line in lines]
    assert all(isinstance(event, Event) for event in events)
    stamps = [event.ts for event in events if isinstance(event, Event)]
    assert stamps == sorted(stamps)
    stream = synthetic.generate(config)
    assert (stream.ts >= stream.item_release[stream.item]).all()
    assert (stream.ts >= stream.user_start[stream.user]).all()


def test_generate_help_names_every_shape(capsys: pytest.CaptureFixture[str]) -> None:
    from dataflows.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["generate", "--help"])
    text = capsys.readouterr().out
    assert all(shape in text for shape in synthetic.SHAPES)


RATINGS = synthetic.shape_config("ratings", users=600, events=50_000)


@pytest.fixture(scope="module")
def ratings() -> SyntheticStream:
    return synthetic.generate(RATINGS)


def test_ratings_are_1_to_5_once_per_user_and_item_over_long_histories(
    ratings: SyntheticStream,
) -> None:
    assert ratings.value is not None
    assert set(np.unique(ratings.value)) == {1, 2, 3, 4, 5}
    assert 3.3 < ratings.value.mean() < 4.0  # MovieLens 100k: 3.53
    pairs = ratings.user.astype(np.int64) * RATINGS.items + ratings.item
    assert len(np.unique(pairs)) == len(pairs)
    history = np.bincount(ratings.user)
    assert np.median(history[history > 0]) >= 50
    event = parse_event(next(synthetic.lines(ratings)))
    assert isinstance(event, Event) and event.type == "rating" and event.value in range(1, 6)


def test_ratings_carry_a_user_effect_and_are_low_outside_the_taste(
    ratings: SyntheticStream,
) -> None:
    assert ratings.value is not None
    order = np.lexsort((ratings.ts, ratings.user))
    user, value = ratings.user[order], ratings.value[order].astype(float)
    halves = []
    for parity in (0, 1):  # odd and even ratings of each user: the same user mean shows in both
        half = np.arange(len(user)) % 2 == parity
        halves.append(np.bincount(user[half], value[half]) / np.bincount(user[half]).clip(1))
    active = np.bincount(user) >= 40
    assert np.corrcoef(halves[0][active], halves[1][active])[0, 1] > 0.5

    # A user's three most rated categories stand for the taste; the rest were explored.
    category = ratings.item_category[ratings.item]
    count = np.zeros((RATINGS.users, RATINGS.categories))
    np.add.at(count, (ratings.user, category), 1)
    favourite = np.argsort(-count, axis=1)[:, :3]
    liked = (favourite[ratings.user] == category[:, None]).any(axis=1)
    assert ratings.value[liked].mean() > ratings.value[~liked].mean() + 0.7


def test_ratings_come_in_sittings_seconds_apart_with_shared_timestamps(
    ratings: SyntheticStream,
) -> None:
    sitting = np.bincount(ratings.session)
    assert 10 <= np.median(sitting[sitting > 0]) <= 50
    order = in_session_order(ratings)
    same = ratings.session[order][1:] == ratings.session[order][:-1]
    gaps = np.diff(ratings.ts[order])[same]
    assert np.median(gaps) < 30_000
    assert 0.1 < (gaps == 0).mean() < 0.4


def test_ratings_follow_successors_and_peak_after_release(ratings: SyntheticStream) -> None:
    assert successor_share(ratings) > 0.3
    # Items released in the first third have 140 days to show their whole life.
    release = ratings.item_release[ratings.item]
    early = (release > synthetic.START_MS) & (release < synthetic.START_MS + RATINGS.span_ms / 3)
    age_days = (ratings.ts - release)[early] / 86_400_000
    first_month = (age_days < 28).sum() / 28
    later = ((age_days >= 84) & (age_days < 140)).sum() / 56
    assert first_month > 4 * later


COLD = synthetic.shape_config("cold-start", users=50_000, items=2_000, events=50_000)


def test_cold_start_users_have_short_histories_and_items_keep_arriving() -> None:
    cold = synthetic.generate(COLD)
    history = np.bincount(cold.user)
    history = history[history > 0]
    assert (history <= 5).mean() > 0.6
    assert (cold.user_start[np.unique(cold.user)] > synthetic.START_MS).mean() > 0.7
    new = cold.item_release > synthetic.START_MS
    assert new[np.unique(cold.item)].mean() > 0.6
    assert new[cold.item].mean() > 0.5  # and they take most of the traffic

    # A new item's first day comes more by co-occurrence than an established item's visits.
    hits, index = follows_successor(cold, cold.successors)
    item = cold.item[index]
    first_day = new[item] & (cold.ts[index] - cold.item_release[item] < 86_400_000)
    assert hits[first_day].mean() > hits[~new[item]].mean() + 0.05


def test_drift_shape_changes_most_tastes_and_every_successor_at_the_drift_point() -> None:
    drift = synthetic.generate(
        synthetic.shape_config("drift", users=2_000, items=1_000, events=60_000)
    )
    assert 0.75 < drift.drifting.mean() < 0.85
    assert mean_overlap(drift, drifting=True) < 0.3 < 0.6 < mean_overlap(drift, drifting=False)
    old_hits, index = follows_successor(drift, drift.successors)
    new_hits, _ = follows_successor(drift, drift.drifted_successors)
    after = drift.ts[index] >= drift.drift_ts
    assert old_hits[~after].mean() > 0.35 > 0.15 > old_hits[after].mean()
    assert new_hits[after].mean() > 0.35 > 0.15 > new_hits[~after].mean()
