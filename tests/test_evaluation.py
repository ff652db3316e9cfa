"""The prequential protocol: baskets, targets, list timing, forgetting and emitted lists."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from operators.baselines import Popularity
from operators.engine import Engine
from operators.engine_config import EngineConfig
from operators.evaluation import (
    Curve,
    EmittedFormatError,
    EmittedList,
    LiveTiming,
    prequential,
    read_emitted,
)
from operators.events import FORGET_USER, Event
from operators.windows import GateSettings


def buy(user: str, item: str, ts: int) -> Event:
    return Event(user, item, ts, "purchase")


def forget(user: str, ts: int) -> Event:
    return Event(user, None, ts, FORGET_USER)


class Recorder:
    """Hands out a fixed list and records every call, in order."""

    def __init__(self, ranked: list[str], name: str = "recorder") -> None:
        self.name = name
        self.ranked = ranked
        self.calls: list[tuple[str, ...]] = []

    def learn(self, event: Event) -> None:
        self.calls.append(("learn", event.user_id, event.item_id or event.type))

    def recommend(self, user_id: str, k: int) -> list[str]:
        self.calls.append(("recommend", user_id))
        return self.ranked[:k]


def test_popularity_on_a_hand_checked_stream() -> None:
    stream = [
        buy("ann", "a", 1),
        buy("ann", "b", 1),  # one basket, two targets: no list yet, misses
        buy("bob", "a", 2),  # no list: miss
        buy("cat", "c", 3),  # no list: miss
        buy("bob", "b", 4),  # bob's list now: b, c (counts a 2, b 1, c 1; ties by first
        buy("bob", "c", 4),  # appearance; a is his): b hits at rank 1, c at rank 2
        buy("ann", "a", 5),  # ann's list: c (a and b are hers); a is no target,
        buy("ann", "c", 5),  # c hits at rank 1
        buy("cat", "b", 6),  # cat's list: a (3), b (2); b hits at rank 2
    ]
    report = prequential(stream, [Popularity()], k=2)["popularity"]
    assert report.targets == 8
    assert report.hits == 4
    assert report.baskets == 6
    assert report.hr == pytest.approx(4 / 8)
    assert report.mrr == pytest.approx((1 + 1 / 2 + 1 + 1 / 2) / 8)
    assert report.ndcg == pytest.approx((1 + 1 + 1 / math.log2(3)) / 6)
    assert report.coverage == pytest.approx(1.0)  # bob got b and c, cat a and b
    metrics = report.metrics()
    assert list(metrics) == [
        "hr@2",
        "ndcg@2",
        "mrr@2",
        "candidate_recall",
        "coverage",
        "targets",
        "hr@2_cold",
        "targets_cold",
        "hr@2_warm",
        "targets_warm",
        "events_per_s",
    ]
    assert metrics["events_per_s"] > 0
    assert metrics["candidate_recall"] is None  # popularity exposes no candidates


def test_the_list_is_asked_when_a_returning_users_basket_begins() -> None:
    model = Recorder(["z"])
    prequential(
        [buy("ann", "x", 1), buy("bob", "y", 1), buy("ann", "w", 2), buy("bob", "v", 2)], [model]
    )
    assert model.calls == [
        ("learn", "ann", "x"),
        ("learn", "bob", "y"),
        ("recommend", "ann"),
        ("learn", "ann", "w"),
        ("recommend", "bob"),
        ("learn", "bob", "v"),
    ]


class CatchingUp(Recorder):
    def catch_up(self, user_id: str, ts: int) -> None:
        self.calls.append(("catch_up", user_id, ts))


def test_catch_up_comes_with_the_baskets_time_right_before_the_list() -> None:
    model = CatchingUp(["b"])
    prequential([buy("ann", "a", 1), buy("ann", "b", 7), buy("ann", "b", 9)], [model])
    # The basket at 9 holds no target (b was bought at 7): nothing is asked for it.
    assert model.calls == [
        ("learn", "ann", "a"),
        ("catch_up", "ann", 7),
        ("recommend", "ann"),
        ("learn", "ann", "b"),
        ("learn", "ann", "b"),
    ]


class WithCandidates(CatchingUp):
    """Ranks ``ranked`` out of a fixed candidate set."""

    def __init__(self, ranked: list[str], candidates: list[str]) -> None:
        super().__init__(ranked)
        self.candidates = candidates

    def candidate_items(self, user_id: str) -> list[str]:
        self.calls.append(("candidate_items", user_id))
        return self.candidates


def test_candidates_are_asked_with_the_list_and_not_timed() -> None:
    model = WithCandidates(["b"], ["b", "c"])
    prequential([buy("ann", "a", 1), buy("ann", "b", 7)], [model])
    assert model.calls == [
        ("learn", "ann", "a"),
        ("catch_up", "ann", 7),
        ("recommend", "ann"),
        ("candidate_items", "ann"),
        ("learn", "ann", "b"),
    ]


def test_candidate_recall_and_the_cold_warm_split_on_a_hand_checked_stream() -> None:
    stream = [
        buy("ann", "x", 1),  # cold (0 earlier events), no list and no candidates: miss
        buy("ann", "y", 2),  # cold (1), list a, candidates a, b: miss, not a candidate
        buy("ann", "z", 3),  # cold (2): the same
        buy("ann", "w", 4),  # cold (3): the same
        buy("ann", "x", 5),  # no target (bought at 1), but ann's 5th event
        buy("ann", "a", 6),  # warm (5): a hits and is a candidate,
        buy("ann", "b", 6),  # b is only a candidate
        buy("bob", "b", 6),  # cold (0), bob's first basket: no list, no candidates
        buy("bob", "a", 7),  # cold (1): hit, candidate
        forget("ann", 8),
        buy("ann", "c", 9),  # cold again (history forgotten), no list: miss
    ]
    reports = prequential(stream, [WithCandidates(["a"], ["a", "b"]), Popularity()], k=1)
    metrics = reports["recorder"].metrics()
    # 9 targets: ann's x, y, z, w, c, bob's b, a cold (1 hit: bob's a); ann's a, b warm (1 hit).
    assert metrics["hr@1"] == pytest.approx(2 / 9)
    assert (metrics["targets_cold"], metrics["targets_warm"]) == (7, 2)
    assert metrics["hr@1_cold"] == pytest.approx(1 / 7)
    assert metrics["hr@1_warm"] == pytest.approx(1 / 2)
    # Candidate hits: ann's a and b at 6, bob's a at 7.
    assert metrics["candidate_recall"] == pytest.approx(3 / 9)
    # The split comes from the events, whatever the model.
    baseline = reports["popularity"].metrics()
    assert (baseline["targets_cold"], baseline["targets_warm"]) == (7, 2)
    assert baseline["candidate_recall"] is None


def test_a_basket_is_scored_against_the_list_from_before_it() -> None:
    # The list after ann's first basket holds "b"; the model learns b only after scoring.
    model = Recorder(["b", "c"])
    report = prequential([buy("ann", "a", 1), buy("ann", "b", 2), buy("ann", "c", 2)], [model])
    assert (report["recorder"].targets, report["recorder"].hits) == (3, 2)
    assert model.calls.index(("recommend", "ann")) < model.calls.index(("learn", "ann", "b"))


def test_users_without_a_list_miss_and_seen_items_are_no_targets() -> None:
    model = Recorder(["a", "b"])
    stream = [buy("ann", "a", 1), buy("bob", "a", 2), buy("ann", "a", 3), buy("ann", "a", 3)]
    report = prequential(stream, [model])["recorder"]
    # ann's first a and bob's a have no list yet; ann's a at ts 3 is no target (bought before).
    assert (report.targets, report.hits) == (2, 0)


def test_items_known_from_a_warm_start_are_no_targets_and_its_users_are_returning() -> None:
    model = Recorder(["b", "c"])
    stream = [buy("ann", "a", 1), buy("ann", "b", 1), buy("bob", "c", 2)]
    report = prequential(stream, [model], known={"ann": ("a",)})["recorder"]
    # ann bought a before the stream: only b is a target, scored against her list (a hit);
    # bob is new: his first basket has no list.
    assert (report.targets, report.hits) == (2, 1)
    assert model.calls[0] == ("recommend", "ann")


def test_distinct_items_of_a_basket_are_one_target_each() -> None:
    model = Recorder(["b"])
    stream = [buy("ann", "a", 1), buy("ann", "b", 2), buy("ann", "b", 2), buy("ann", "c", 2)]
    report = prequential(stream, [model])["recorder"]
    assert (report.targets, report.hits) == (3, 1)


def test_forget_user_reaches_the_model_and_resets_the_users_record() -> None:
    model = Recorder(["a", "b"])
    stream = [buy("ann", "b", 1), forget("ann", 2), buy("ann", "b", 3), buy("ann", "a", 4)]
    report = prequential(stream, [model])["recorder"]
    assert ("learn", "ann", FORGET_USER) in model.calls
    # b at ts 3 is a target again (history forgotten) and misses (ann is new again, no list);
    # a at ts 4 hits the list she is handed then.
    assert (report.targets, report.hits) == (3, 1)
    without_forget = prequential([e for e in stream if not e.is_forget], [Recorder(["a", "b"])])
    assert (without_forget["recorder"].targets, without_forget["recorder"].hits) == (2, 1)


def test_events_are_replayed_in_time_order_keeping_ties_in_input_order() -> None:
    model = Recorder([])
    prequential([buy("ann", "late", 5), buy("bob", "x", 1), buy("cat", "y", 1)], [model])
    learned = [call[2] for call in model.calls if call[0] == "learn"]
    assert learned == ["x", "y", "late"]


def test_the_list_reflects_other_users_events_until_the_basket() -> None:
    stream = [buy("ann", "x", 1), buy("bob", "a", 2), buy("ann", "a", 3), buy("ann", "b", 3)]
    report = prequential(stream, [Popularity()], k=1)["popularity"]
    # Right before her second basket ann's list holds a, which bob bought in between.
    assert (report.targets, report.hits) == (4, 1)


def test_every_model_gets_the_same_calls_in_one_pass() -> None:
    first, second = Recorder(["a"], "first"), Recorder(["b"], "second")
    stream = [buy("ann", "x", 1), buy("ann", "a", 2), buy("ann", "b", 3)]
    reports = prequential(stream, [first, second])
    assert first.calls == second.calls
    assert reports["first"].hits == 1
    assert reports["second"].hits == 1


def test_model_names_must_be_distinct_and_k_positive() -> None:
    with pytest.raises(ValueError, match="two models"):
        prequential([buy("ann", "a", 1)], [Recorder([]), Recorder([])])
    with pytest.raises(ValueError, match="k must be"):
        prequential([buy("ann", "a", 1)], [Recorder([])], k=0)


def test_sliding_window_curve() -> None:
    model = Recorder(["hit"])
    stream = [buy("ann", "x", 1), buy("ann", "hit", 2), buy("bob", "y", 3), buy("bob", "z", 4)]
    report = prequential(stream, [model], curve=Curve(window=2, every=1))["recorder"]
    # targets: x miss (no list), hit hit, y miss (no list), z miss
    assert report.curve == [(1, 0.0), (2, 0.5), (3, 0.5), (4, 0.0)]
    sparse = prequential(stream, [Recorder(["hit"])], curve=Curve(window=3, every=3))
    assert sparse["recorder"].curve == [(3, 1 / 3), (4, 1 / 3)]  # the last point ends the curve


def emitted(user: str, items: list[str] | None, as_of: int) -> EmittedList:
    return EmittedList(user, None if items is None else tuple(items), as_of)


def test_emitted_lists_count_only_when_strictly_before_the_basket() -> None:
    lists = [emitted("ann", ["a"], 1), emitted("ann", ["b"], 2)]
    report = prequential([buy("ann", "a", 2), buy("ann", "b", 3)], [], emitted=lists)["emitted"]
    # at ts 2 only the list of ts 1 counts (a hits); at ts 3 the list of ts 2 (b hits)
    assert (report.targets, report.hits) == (2, 2)
    assert report.events_per_s is None
    assert report.coverage == 1.0


def test_emitted_tombstone_removes_the_list_and_the_later_record_wins() -> None:
    lists = [
        emitted("ann", ["a"], 1),
        emitted("ann", ["b"], 1),
        emitted("bob", ["c"], 1),
        emitted("bob", None, 2),
        emitted("cat", ["d"], 3),
        emitted("cat", ["e"], 2),  # applied before d, whatever the file order
    ]
    stream = [buy("ann", "a", 5), buy("ann", "b", 5), buy("bob", "c", 5), buy("cat", "d", 5)]
    report = prequential(stream, [], emitted=lists)["emitted"]
    assert (report.targets, report.hits) == (4, 2)


def test_emitted_lists_apply_in_as_of_order_whatever_the_file_order() -> None:
    # The dataflow serves bob's window of ts 2 only when his next event comes, after a list of
    # another user's later window was written.
    lists = [emitted("bob", ["x"], 9), emitted("ann", ["z"], 8), emitted("bob", ["b"], 2)]
    stream = [buy("bob", "y", 1), buy("bob", "b", 3), buy("bob", "x", 10)]
    report = prequential(stream, [], emitted=lists)["emitted"]
    assert (report.targets, report.hits) == (3, 2)  # y had no list; b and x hit


class ListLog:
    """Wraps the engine and logs every list it serves, as the dataflow emits them."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.name = engine.name
        self.lists: list[EmittedList] = []
        self._versions: dict[str, int] = {}

    def learn(self, event: Event) -> None:
        self.engine.learn(event)
        if event.is_forget:
            self.lists.append(EmittedList(event.user_id, None, event.ts))
            self._versions.pop(event.user_id, None)
        else:
            self._log(event.user_id)

    def catch_up(self, user_id: str, ts: int) -> None:
        self.engine.catch_up(user_id, ts)
        self._log(user_id)

    def recommend(self, user_id: str, k: int) -> list[str]:
        return self.engine.recommend(user_id, k)

    def _log(self, user_id: str) -> None:
        latest = self.engine.latest(user_id)
        if latest is not None and self._versions.get(user_id) != latest.version:
            self._versions[user_id] = latest.version
            items = tuple(item for item, _, _ in latest.items)
            self.lists.append(EmittedList(user_id, items, latest.as_of))


streams = st.lists(
    st.tuples(
        st.sampled_from(["ann", "bob", "cat"]),
        st.sampled_from(["a", "b", "c", "d", "e", None]),
        st.integers(min_value=1, max_value=12),
    ),
    max_size=40,
).map(lambda rows: [forget(u, t) if i is None else buy(u, i, t) for u, i, t in rows])


@settings(max_examples=150, deadline=None)
@given(streams)
def test_scoring_emitted_lists_equals_scoring_the_live_model(stream: list[Event]) -> None:
    live = ListLog(Engine(EngineConfig(k=3), GateSettings(length_ms=5, allowed_lateness_ms=20)))
    expected = prequential(stream, [live], k=3)["streamrec"].metrics()
    replayed = prequential(stream, [], k=3, emitted=live.lists)["emitted"].metrics()
    del expected["events_per_s"], replayed["events_per_s"]
    assert replayed == expected


def test_emitted_lists_give_the_live_cold_warm_split() -> None:
    # Bob buys the run of items ann bought before him, so his lists can hold his next item.
    stream = [
        buy(user, item, ts + lag)
        for ts, item in enumerate("abcdefgh", 1)
        for user, lag in (("ann", 0), ("bob", 10))
    ]
    live = ListLog(Engine(EngineConfig(k=3), GateSettings(length_ms=5, allowed_lateness_ms=20)))
    expected = prequential(stream, [live], k=3)["streamrec"].metrics()
    replayed = prequential(stream, [], k=3, emitted=live.lists)["emitted"].metrics()
    split = ["hr@3_cold", "targets_cold", "hr@3_warm", "targets_warm"]
    assert [replayed[name] for name in split] == [expected[name] for name in split]
    # Each user: the first 5 items (0 to 4 earlier events) are cold, the last 3 warm.
    assert (expected["targets_cold"], expected["targets_warm"]) == (10, 6)
    assert expected["hr@3_cold"] > 0
    assert expected["hr@3_warm"] > 0


def test_read_emitted_parses_lists_and_tombstones() -> None:
    lines = [
        b'{"user_id":"u1","items":[{"item_id":"i2","score":0.9,"because":"i1"}],"as_of":7,'
        b'"version":3,"model":"streamrec"}',
        b'{"user_id":"u1","items":null,"as_of":8,"version":4,"model":"streamrec"}',
        b'{"user_id":"u1","tombstone":true,"as_of":9}',
    ]
    assert list(read_emitted(lines)) == [
        EmittedList("u1", ("i2",), 7),
        EmittedList("u1", None, 8),
        EmittedList("u1", None, 9),
    ]
    with pytest.raises(EmittedFormatError, match="line 2"):
        list(read_emitted([lines[0], b'{"items": []}']))


class Idling(CatchingUp):
    """Records the live timing's calls too."""

    def on_idle(self, user_id: str) -> None:
        self.calls.append(("on_idle", user_id))

    def expire(self, user_id: str) -> None:
        self.calls.append(("expire", user_id))


def test_an_idle_users_list_is_the_last_served_before_they_return_or_none_after_expiry() -> None:
    model = Idling(["b"])
    timing = LiveTiming(close_after_idle_ms=3, refresh_ms=10, expire_ms=25)
    stream = [buy("ann", "a", 1), buy("bob", "x", 5), buy("ann", "b", 14), buy("bob", "b", 40)]
    report = prequential(stream, [model], live=timing)[model.name]
    # Ann's lists are due at 4 (her window closes) and 11 (a refresh 10 ms after her event):
    # she is back at 14, so the list of 4 is replaced unseen and only the one of 11 is asked
    # for. Bob's are due at 8, 15 and 25 and his state expires at 30: he is back at 40 and holds
    # no list. After her basket ann never comes back: nothing more is asked for her.
    assert model.calls == [
        ("learn", "ann", "a"),
        ("learn", "bob", "x"),
        ("on_idle", "ann"),
        ("recommend", "ann"),
        ("learn", "ann", "b"),
        ("expire", "bob"),
        ("learn", "bob", "b"),
    ]
    assert (report.hits, report.targets) == (1, 4), "the first baskets miss too"


@settings(max_examples=50, deadline=None)
@given(streams)
def test_lists_never_idle_long_enough_score_as_lists_asked_for_at_the_basket(
    stream: list[Event],
) -> None:
    def engine() -> Engine:
        return Engine(EngineConfig(k=3), GateSettings(length_ms=5, allowed_lateness_ms=20))

    fresh = prequential(stream, [engine()], k=3)["streamrec"].metrics()
    timing = LiveTiming(close_after_idle_ms=100, refresh_ms=100, expire_ms=1000)
    never_idle = prequential(stream, [engine()], k=3, live=timing)["streamrec"].metrics()
    del fresh["events_per_s"], never_idle["events_per_s"]
    assert never_idle == fresh


def test_refreshed_lists_of_the_engine_hold_what_was_learned_while_the_user_was_away() -> None:
    # Ann buys a, then is away while others buy a and b together; she comes back for b. Only
    # her basket at 100 can be a hit: each of the others has a single basket.
    others = [buy(f"u{n}", item, 10 + n) for n in range(20) for item in "ab"]
    stream = [buy("ann", "a", 0), *others, buy("ann", "b", 100)]

    def hits(timing: LiveTiming | None) -> int:
        engine = Engine(EngineConfig(k=1), GateSettings(length_ms=1, allowed_lateness_ms=0))
        return prequential(stream, [engine], k=1, live=timing)["streamrec"].hits

    assert hits(LiveTiming(close_after_idle_ms=5)) == 0, "held since before anyone bought b"
    assert hits(LiveTiming(close_after_idle_ms=5, refresh_ms=60)) == 1
    assert hits(LiveTiming(close_after_idle_ms=5, refresh_ms=60, expire_ms=80)) == 0
    assert hits(None) == 1


def test_a_warm_user_holds_the_list_last_served_before_the_stream_under_the_live_timing() -> None:
    model = Idling(["b"])
    timing = LiveTiming(close_after_idle_ms=5, refresh_ms=10, expire_ms=1000)
    stream = [buy("bob", "x", 90), buy("ann", "b", 100), buy("ann", "c", 500)]
    prequential(stream, [model], live=timing, known={"ann": ["a"]}, idle_since={"ann": 0})
    assert model.calls[:4] == [
        ("on_idle", "ann"),  # at 80, the last refresh before the stream (10, 20, 40, 80)
        ("recommend", "ann"),
        ("learn", "bob", "x"),  # bob never comes back: nothing is asked for him
        ("learn", "ann", "b"),  # scored against the list held since 80: no catch_up for it
    ]


def _popular(learned: list[Event], user_id: str) -> list[str]:
    """What a popularity model that learned ``learned`` lists for the user (2 items)."""
    model = Popularity()
    for event in learned:
        model.learn(event)
    return model.recommend(user_id, 2)


@settings(max_examples=100, deadline=None)
@given(
    streams,
    st.integers(1, 3),
    st.one_of(st.none(), st.integers(1, 4)),
    st.one_of(st.none(), st.integers(5, 12)),
)
def test_a_live_list_is_the_one_made_at_the_last_moment_due_before_the_return(
    stream: list[Event], close: int, refresh: int | None, expire: int | None
) -> None:
    """Checked against a direct reading of the schedule: the list made from the events up to
    the last moment due before each returning basket, none after the expiry, and, when nothing
    was due yet, the list made at the basket (after the events before it in the stream)."""
    events = sorted((event for event in stream if not event.is_forget), key=lambda e: e.ts)
    offsets = {close} | ({refresh * 2**n for n in range(5)} if refresh else set())
    offsets = {offset for offset in offsets if offset >= close}
    if expire is not None:
        offsets = {offset for offset in offsets if offset < expire} | {expire}
    expected = 0
    last: dict[str, int] = {}
    seen: dict[str, set[str | None]] = {}
    for at, event in enumerate(events):
        user, ts = event.user_id, event.ts
        basket_starts = last.get(user) != ts
        if basket_starts and user in last:
            due = [offset for offset in sorted(offsets) if last[user] + offset < ts]
            if not due:
                ranked = _popular(events[:at], user)
            elif due[-1] == expire:
                ranked = []
            else:
                moment = last[user] + due[-1]
                ranked = _popular([e for e in events if e.ts <= moment], user)
            basket = {e.item_id for e in events if e.user_id == user and e.ts == ts}
            expected += len((basket - seen[user]) & set(ranked))
        if basket_starts:
            seen.setdefault(user, set()).update(
                e.item_id for e in events if e.user_id == user and e.ts == ts
            )
        last[user] = ts
    timing = LiveTiming(close, refresh, expire)
    assert prequential(events, [Popularity()], k=2, live=timing)["popularity"].hits == expected
