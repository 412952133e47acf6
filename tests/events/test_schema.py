from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.errors import InvalidEvent
from streamrec.events.schema import EVENT_TYPES, ClickEvent, EventLimits, encode_event, parse_event

NOW = 1_750_000_000_000
GOOD = {"event_id": "e1", "session_id": "s1", "user_id": "u1", "item_id": "Toy Story (1995)",
        "event_type": "click", "timestamp": NOW - 1000}


def reason(doc: object, limits: EventLimits = EventLimits()) -> str:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    with pytest.raises(InvalidEvent) as info:
        parse_event(raw, limits, now_ms=NOW)
    return info.value.reason


def test_a_valid_event_parses_and_round_trips() -> None:
    event = parse_event(orjson.dumps(GOOD), now_ms=NOW)
    assert event == ClickEvent("e1", "s1", "Toy Story (1995)", "click", NOW - 1000, "u1")
    assert parse_event(encode_event(event), now_ms=NOW) == event


def test_user_id_is_optional_and_may_be_null() -> None:
    without = {k: v for k, v in GOOD.items() if k != "user_id"}
    assert parse_event(orjson.dumps(without), now_ms=NOW).user_id is None
    assert parse_event(orjson.dumps({**GOOD, "user_id": None}), now_ms=NOW).user_id is None
    assert b"user_id" not in encode_event(parse_event(orjson.dumps(without), now_ms=NOW))


@pytest.mark.parametrize(("doc", "expected"), [
    (b"{nope", "not_json"),
    (b"\xff\xfe", "not_json"),
    (b"", "not_json"),
    ([1, 2], "not_object"),
    ("just a string", "not_object"),
    ({k: v for k, v in GOOD.items() if k != "item_id"}, "missing_field"),
    ({**GOOD, "price": 9.99}, "unknown_field"),
    ({**GOOD, "item_id": 7}, "wrong_type"),
    ({**GOOD, "session_id": None}, "wrong_type"),
    ({**GOOD, "user_id": 12}, "wrong_type"),
    ({**GOOD, "timestamp": "1750000000000"}, "wrong_type"),
    ({**GOOD, "timestamp": 1.75e12}, "wrong_type"),
    ({**GOOD, "timestamp": True}, "wrong_type"),
    ({**GOOD, "event_type": 3}, "wrong_type"),
    ({**GOOD, "event_type": "like"}, "unknown_event_type"),
    ({**GOOD, "event_type": "VIEW"}, "unknown_event_type"),
    ({**GOOD, "timestamp": 1_750_000_000}, "absurd_timestamp"),  # seconds, not ms
    ({**GOOD, "timestamp": -5}, "absurd_timestamp"),
    ({**GOOD, "timestamp": NOW + 2 * 86_400_000}, "absurd_timestamp"),
    ({**GOOD, "timestamp": 10**30}, "wrong_type"),  # beyond 64 bits, the JSON parser reads a float
    ({**GOOD, "session_id": ""}, "empty_id"),
    ({**GOOD, "event_id": "   "}, "empty_id"),
    ({**GOOD, "item_id": "x" * 129}, "id_too_long"),
    ({**GOOD, "session_id": "a\nb"}, "bad_id"),
    ({**GOOD, "item_id": "a\x1fb"}, "bad_id"),
])
def test_each_kind_of_bad_event_gets_its_reason(doc: object, expected: str) -> None:
    assert reason(doc) == expected


def test_oversized_payloads_are_refused_before_parsing() -> None:
    assert reason({**GOOD, "user_id": "u" * 5000}) == "oversized"
    assert reason(b"[" * 10_000) == "oversized"
    assert reason({**GOOD, "item_id": "x" * 50}, EventLimits(max_bytes=64)) == "oversized"


def test_seconds_timestamps_get_a_hint() -> None:
    with pytest.raises(InvalidEvent, match="looks like seconds"):
        parse_event(orjson.dumps({**GOOD, "timestamp": 1_750_000_000}), now_ms=NOW)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
field_values = st.one_of(json_values, st.sampled_from(sorted(EVENT_TYPES)), st.integers(0, 2 * NOW), st.text())
near_events = st.fixed_dictionaries(
    {}, optional={k: field_values for k in ("event_id", "session_id", "user_id", "item_id", "event_type",
                                            "timestamp", "extra")})


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_no_bytes_or_text_crash_the_parser(raw: bytes | str) -> None:
    try:
        parse_event(raw, now_ms=NOW)
    except InvalidEvent:
        pass


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, near_events))
def test_no_json_document_crashes_the_parser(doc: object) -> None:
    try:
        event = parse_event(json.dumps(doc).encode(), now_ms=NOW)
    except InvalidEvent as exc:
        assert exc.reason and exc.detail
    else:
        assert isinstance(event, ClickEvent) and event.event_type in EVENT_TYPES


@settings(max_examples=200, deadline=None)
@given(st.builds(ClickEvent,
                 event_id=st.text(st.characters(codec="utf-8", exclude_categories=("C", "Z")), min_size=1, max_size=128),
                 session_id=st.text(st.characters(codec="utf-8", exclude_categories=("C", "Z")), min_size=1, max_size=128),
                 item_id=st.text(st.characters(codec="utf-8", exclude_categories=("C", "Z")), min_size=1, max_size=128),
                 event_type=st.sampled_from(sorted(EVENT_TYPES)),
                 timestamp=st.integers(EventLimits().min_timestamp_ms, NOW),
                 user_id=st.none() | st.text(st.characters(codec="utf-8", exclude_categories=("C", "Z")), min_size=1,
                                             max_size=128)))
def test_every_valid_event_round_trips(event: ClickEvent) -> None:
    raw = encode_event(event)
    if len(raw) <= EventLimits().max_bytes:
        assert parse_event(raw, now_ms=NOW) == event
