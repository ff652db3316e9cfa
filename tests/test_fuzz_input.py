"""Property-based fuzzing of everything that reads input: parsing, validation, the dead letter,
JSON Lines files, and the dataflow itself over hostile streams.

Every input must end as an event or as a rejection whose reason names what is wrong; nothing
may raise. The strategies mix arbitrary bytes with near-valid records (one field broken), so
most examples reach the checks behind the JSON decoder rather than stopping at it.
"""

from __future__ import annotations

import base64
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import orjson
from bytewax.testing import run_main
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from dataflows.recommend import build_flow
from operators import jsonl
from operators.config import config_from_mapping
from operators.events import (
    DEFAULT_MAX_BYTES,
    DEFAULT_TYPE_WEIGHTS,
    FORGET_USER,
    Event,
    Rejected,
    _checked_event,
    _plain_event,
    _usual_event,
    parse_event,
    user_key,
)
from operators.intake import Admitted, DeadLetter, Origin, Raw, admit
from operators.tally import Tally

T0 = 1_700_000_000_000
KNOWN = frozenset(DEFAULT_TYPE_WEIGHTS)
FIELDS = ("user_id", "item_id", "ts", "type", "value", "event_id", "title", "category")

FUZZ = settings(max_examples=300, deadline=None)
# Each example of the dataflow properties runs a whole (small) Bytewax flow.
FLOW_FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children)
    ),
    max_leaves=12,
)
# Values that are wrong for some field: NaN and infinities (written as orjson cannot), huge and
# negative numbers, deep containers, very long and empty strings, absurd dates.
hostile_values = (
    json_values
    | st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -1e308, 2**63 - 1, -(2**63)])
    | st.integers(min_value=0, max_value=10**20)
    | st.text(min_size=200, max_size=2000)
    | st.just("")
    | st.sampled_from(["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00", "2020-13-45"])
)
valid_records = st.fixed_dictionaries(
    {
        "user_id": st.text(min_size=1, max_size=20) | st.integers(min_value=0, max_value=10**9),
        "item_id": st.text(min_size=1, max_size=20),
        "ts": st.integers(min_value=T0, max_value=T0 + 10**9)
        | st.sampled_from(["2011-12-09T12:50:00", "2011-12-09T12:50:00+01:00"]),
        "type": st.sampled_from(sorted(KNOWN)),
    },
    optional={
        "value": st.floats(min_value=-100, max_value=100),
        "event_id": st.text(max_size=20),
        "title": st.text(max_size=40),
        "category": st.text(max_size=10),
        "extra": json_values,
    },
)


@st.composite
def broken_records(draw: st.DrawFn) -> tuple[dict[str, Any], str]:
    """A valid record with one field removed or replaced by something hostile."""
    record = draw(valid_records)
    name = draw(st.sampled_from(FIELDS))
    if draw(st.booleans()):
        record.pop(name, None)
    else:
        record[name] = draw(hostile_values)
    return record, name


def _encode(record: dict[str, Any]) -> bytes:
    """JSON as a careless producer writes it (NaN and Infinity included, as Python's json does)."""
    return json.dumps(record).encode()


def _is_specific(reason: str) -> bool:
    return bool(reason) and "\n" not in reason and len(reason) < 400


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes_are_an_event_or_a_specific_rejection(raw: bytes) -> None:
    parsed = parse_event(raw)
    assert isinstance(parsed, Event | Rejected)
    if isinstance(parsed, Rejected):
        assert _is_specific(parsed.reason)


@FUZZ
@given(valid_records)
def test_a_valid_record_parses_and_its_canonical_form_parses_to_the_same_event(
    record: dict[str, Any],
) -> None:
    event = parse_event(orjson.dumps(record))
    assert isinstance(event, Event), event
    assert event.user_id == str(record["user_id"])
    assert parse_event(event.to_json()) == event


@FUZZ
@given(valid_records, st.sampled_from([json.dumps, orjson.dumps]))
def test_the_quick_user_key_is_the_parsed_user(record: dict[str, Any], encode: Any) -> None:
    raw = encode(record)
    raw = raw.encode() if isinstance(raw, str) else raw
    assert user_key(raw) == str(record["user_id"])


@FUZZ
@given(valid_records | broken_records().map(lambda broken: broken[0]))
@example({"user_id": "u", "item_id": "i", "ts": T0, "type": "rating", "value": 100.5})
@example({"user_id": "u", "item_id": "i", "ts": T0, "type": "view", "value": math.inf})
def test_the_quick_validation_agrees_with_the_thorough_one(record: dict[str, Any]) -> None:
    """The usual record's shortcut gives the same event as checking each field, or declines."""
    plain = _plain_event(record, KNOWN)
    assert plain is None or plain == _checked_event(record, KNOWN)


@FUZZ
@given(valid_records | broken_records().map(lambda broken: broken[0]))
@example({"user_id": "u", "item_id": "i", "ts": T0, "type": "view", "value": 3})
@example({"user_id": "u", "item_id": "i", "ts": T0, "type": "view", "value": math.nan})
@example({"user_id": "u", "item_id": "i", "ts": float(T0), "type": "view"})
def test_the_typed_decoding_gives_the_thorough_checks_event_or_declines(
    record: dict[str, Any],
) -> None:
    raw = _encode(record)
    usual = _usual_event(raw, KNOWN)
    try:
        decoded = orjson.loads(raw)
    except orjson.JSONDecodeError:
        assert usual is None, "what orjson refuses is no event"
        return
    assert usual is None or usual == _checked_event(decoded, KNOWN)


def test_the_typed_decoding_takes_the_usual_message_and_declines_a_forget() -> None:
    usual = b'{"user_id":"u","item_id":"i","ts":%d,"type":"view","value":2,"title":"T"}' % T0
    assert _usual_event(usual, KNOWN) == Event("u", "i", T0, "view", 2.0, title="T")
    forget = b'{"user_id":"u","item_id":"i","ts":%d,"type":"forget_user"}' % T0
    assert _usual_event(forget, KNOWN | {FORGET_USER}) is None
    assert parse_event(forget, KNOWN).type == FORGET_USER


def test_the_quick_validation_takes_the_usual_record() -> None:
    record = {"user_id": "u", "item_id": "i", "ts": T0, "type": "view", "value": 2.0}
    assert _plain_event(record, KNOWN) == Event("u", "i", T0, "view", 2.0)


@FUZZ
@given(broken_records())
# Found by the fuzzer once: a reason quoted a newline of the input and took two lines.
@example(({"user_id": "0", "item_id": "0", "ts": 1_700_000_000_000, "type": "a\nb"}, "type"))
def test_a_broken_field_is_rejected_naming_the_field_or_accepted_as_a_valid_event(
    case: tuple[dict[str, Any], str],
) -> None:
    record, name = case
    parsed = parse_event(_encode(record), KNOWN, max_bytes=1 << 20)
    if isinstance(parsed, Rejected):
        assert _is_specific(parsed.reason)
        assert name in parsed.reason or "invalid JSON" in parsed.reason, parsed.reason
        return
    # Accepted: then every field it kept is of the documented kind.
    assert isinstance(parsed.user_id, str) and 1 <= len(parsed.user_id) <= 256
    assert isinstance(parsed.item_id, str) and 1 <= len(parsed.item_id) <= 256
    assert 631_152_000_000 <= parsed.ts <= 4_102_444_800_000
    assert parsed.type in KNOWN
    assert parsed.value is None or (math.isfinite(parsed.value) and abs(parsed.value) <= 1e12)
    if parsed.type == "rating" and parsed.value is not None:
        assert abs(parsed.value) <= 100


@FUZZ
@given(st.integers(min_value=0, max_value=10), st.integers(min_value=80, max_value=2000))
def test_the_size_limit_admits_exactly_max_bytes_and_rejects_one_more(
    padding: int, max_bytes: int
) -> None:
    base = orjson.dumps({"user_id": "u", "item_id": "i", "ts": T0, "type": "view", "title": ""})
    at_limit = base[:-2] + b"x" * (max_bytes - len(base)) + b'"}'
    assert len(at_limit) == max_bytes
    assert isinstance(parse_event(at_limit, KNOWN, max_bytes), Event)
    over = base[:-2] + b"x" * (max_bytes - len(base) + 1 + padding) + b'"}'
    rejected = parse_event(over, KNOWN, max_bytes)
    assert isinstance(rejected, Rejected)
    assert rejected.reason == f"message of {len(over)} bytes is over the limit of {max_bytes}"


def test_deep_huge_and_oversized_inputs_are_rejected_with_their_reason() -> None:
    deep = b"[" * 5000 + b"]" * 5000
    assert "depth" in parse_event(deep, KNOWN, max_bytes=1 << 20).reason  # type: ignore[union-attr]
    long_id = orjson.dumps({"user_id": "u" * 257, "item_id": "i", "ts": T0, "type": "view"})
    assert parse_event(long_id).reason == 'field "user_id" must have 1 to 256 characters'  # type: ignore[union-attr]
    huge = b'{"user_id": "' + b"u" * DEFAULT_MAX_BYTES + b'"}'
    assert "over the limit of 16384" in parse_event(huge).reason  # type: ignore[union-attr]
    unhashable = orjson.dumps({"user_id": "u", "item_id": "i", "ts": T0, "type": ["view"]})
    assert parse_event(unhashable).reason == 'field "type" must be a string, got list'  # type: ignore[union-attr]
    overflowing = orjson.dumps(
        {"user_id": "u", "item_id": "i", "ts": T0, "type": "rating", "value": 2000}
    )
    assert parse_event(overflowing).reason == (  # type: ignore[union-attr]
        'field "value" of a rating must be within ±100, got 2000'
    )
    assert len(parse_event(b'{"type": "' + b"h" * 5000 + b'"}').reason) < 200  # type: ignore[union-attr]


@FUZZ
@given(st.binary(max_size=300) | valid_records.map(orjson.dumps), st.booleans())
def test_admit_gives_an_admitted_event_or_a_dead_letter_that_serialises(
    raw: bytes, null_value: bool
) -> None:
    message = Raw(3, Origin("events", 0, partition=1), None if null_value else raw)
    result = admit(message, KNOWN, max_bytes=DEFAULT_MAX_BYTES)
    if isinstance(result, Admitted):
        assert result.raw == raw and result.seq == 3
        return
    assert isinstance(result, DeadLetter)
    letter = orjson.loads(result.to_json())
    assert letter["reason"] == result.reason and letter["offset"] == 0
    if null_value:
        assert "raw" not in letter and "raw_base64" not in letter
    else:
        # The original bytes are always recoverable from the dead letter.
        if "raw" in letter:
            assert letter["raw"].encode() == raw
        else:
            assert base64.b64decode(letter["raw_base64"]) == raw


line_records = st.binary(max_size=60).filter(lambda raw: b"\n" not in raw)


@settings(max_examples=60, deadline=None)
@given(st.lists(line_records, max_size=20), st.booleans())
def test_json_lines_files_give_back_every_non_blank_record_with_its_line_number(
    records: list[bytes], compressed: bool
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / ("events.jsonl.gz" if compressed else "events.jsonl")
        assert jsonl.write_jsonl(path, records) == len(records)
        lines = list(jsonl.numbered_lines(path))
    expected = [
        (number, raw.rstrip(b"\r")) for number, raw in enumerate(records, start=1) if raw.strip()
    ]
    assert [(line.number, line.raw) for line in lines] == expected


def _run_flow(lines: list[bytes], max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Tally, int, int]:
    """Replay ``lines`` through the real dataflow; the counts, lists written and dead letters."""
    with tempfile.TemporaryDirectory() as folder:
        events, out, dead = (Path(folder) / name for name in ("in.jsonl", "out", "dead"))
        events.write_bytes(b"".join(line + b"\n" for line in lines))
        config = config_from_mapping(
            {"limits": {"max_message_bytes": max_bytes}, "window": {"allowed_lateness_s": 600}}
        ).for_replay(events, out, dead)
        totals: list[Tally] = [Tally()]
        run_main(build_flow(config, report=totals.append))
        written = len(out.read_bytes().splitlines()) if out.exists() else 0
        letters = len(dead.read_bytes().splitlines()) if dead.exists() else 0
    return totals[-1], written, letters


users = st.sampled_from(["alice", "bob", "carol", "x" * 256, "1"])
items = st.sampled_from(["lamp", "shade", "bulb", "i" * 256])
hostile_stream_events = st.one_of(
    st.builds(
        lambda user, item, minutes, kind, value, event_id: orjson.dumps(
            {
                "user_id": user,
                "item_id": item,
                "ts": T0 + minutes * 60_000,
                "type": kind,
                "value": value,
                "event_id": event_id,
            }
        ),
        users,
        items,
        st.integers(min_value=-(10**6), max_value=10**6),  # out of order, late, far ahead
        st.sampled_from(sorted(KNOWN)),
        st.none() | st.floats(min_value=-1e4, max_value=1e4) | st.sampled_from([1e308, -1e308]),
        st.none() | st.sampled_from(["e1", "e2", "e3"]),  # duplicates
    ),
    st.builds(
        lambda user, minutes: orjson.dumps(
            {"user_id": user, "ts": T0 + minutes * 60_000, "type": "forget_user"}
        ),
        users,
        st.integers(min_value=-10, max_value=10),
    ),
    broken_records().map(lambda case: _encode(case[0])),
    st.binary(max_size=80).filter(lambda raw: b"\n" not in raw and raw.strip()),
)


@FLOW_FUZZ
@given(st.lists(hostile_stream_events, min_size=1, max_size=40))
def test_a_hostile_stream_never_stops_the_flow_and_every_input_is_accounted_for(
    lines: list[bytes],
) -> None:
    total, _written, letters = _run_flow(lines)
    assert total.events_in == len(lines)
    assert total.events_in == total.processed + total.dead_lettered
    assert letters == total.dead_lettered


def test_the_configured_size_limit_dead_letters_larger_messages_in_the_flow() -> None:
    small = orjson.dumps({"user_id": "u", "item_id": "i", "ts": T0, "type": "view"})
    large = orjson.dumps(
        {"user_id": "u", "item_id": "j", "ts": T0 + 1, "type": "view", "title": "t" * 200}
    )
    total, _written, letters = _run_flow([small, large], max_bytes=len(small))
    assert (total.processed, total.dead_lettered, letters) == (1, 1, 1)


@FLOW_FUZZ
@given(
    st.lists(
        st.tuples(st.sampled_from(["alice", "bob"]), st.floats(allow_nan=False)),
        min_size=2,
        max_size=30,
    )
)
def test_ratings_of_any_size_are_learned_or_dead_lettered_never_an_overflow(
    ratings: list[tuple[str, float]],
) -> None:
    lines = [
        _encode(
            {
                "user_id": user,
                "item_id": f"i{index}",
                "ts": T0 + index,
                "type": "rating",
                "value": value,
            }
        )
        for index, (user, value) in enumerate(ratings)
    ]
    total, _written, letters = _run_flow(lines)
    assert total.events_in == total.processed + total.dead_lettered == len(lines)
    assert letters == total.dead_lettered
