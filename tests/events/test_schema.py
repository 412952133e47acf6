from __future__ import annotations

import json
import unicodedata

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.errors import InvalidEvent
from streamrec.events.schema import EVENT_TYPES, REASONS, ClickEvent, EventLimits, encode_event, parse_event

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


def valid_ids(exclude: str = "") -> st.SearchStrategy[str]:
    """Ids that ``streamrec.events.ids`` accepts as they are: printable, NFC, at most 128 bytes of UTF-8."""
    chars = st.characters(codec="utf-8", exclude_categories=("C", "Z"), exclude_characters=exclude)
    return st.text(chars, min_size=1, max_size=32).map(lambda s: unicodedata.normalize("NFC", s)).filter(
        lambda s: s and s.isprintable() and len(s.encode()) <= 128 and not set(exclude) & set(s))


@settings(max_examples=200, deadline=None)
@given(st.builds(ClickEvent, event_id=valid_ids(), session_id=valid_ids(exclude="{}"), item_id=valid_ids(),
                 event_type=st.sampled_from(sorted(EVENT_TYPES)),
                 timestamp=st.integers(EventLimits().min_timestamp_ms, NOW),
                 user_id=st.none() | valid_ids()))
def test_every_valid_event_round_trips(event: ClickEvent) -> None:
    raw = encode_event(event)
    if len(raw) <= EventLimits().max_bytes:
        assert parse_event(raw, now_ms=NOW) == event


@pytest.mark.parametrize(("session_id", "needle"), [("}x", "hash tag"), ("hot}1", "hash tag"), ("{a}", "hash tag")])
def test_braces_in_a_session_id_are_refused_because_they_break_its_hash_tag(session_id: str, needle: str) -> None:
    with pytest.raises(InvalidEvent, match=needle) as caught:
        parse_event(encode_event({**GOOD, "session_id": session_id}), now_ms=NOW)
    assert caught.value.reason == "bad_id"
    assert parse_event(encode_event({**GOOD, "item_id": "}x{"}), now_ms=NOW).item_id == "}x{"  # only session ids


def test_ids_are_measured_in_utf8_bytes_as_the_server_measures_them() -> None:
    cjk = "\u4e2d" * 43  # 43 characters, 129 bytes: refused by the worker, as by the server
    with pytest.raises(InvalidEvent, match="129 bytes") as caught:
        parse_event(encode_event({**GOOD, "session_id": cjk}), now_ms=NOW)
    assert caught.value.reason == "id_too_long"
    assert parse_event(encode_event({**GOOD, "session_id": cjk[:42]}), now_ms=NOW).session_id == cjk[:42]


def test_ids_are_stored_in_nfc() -> None:
    decomposed = "Cafe\u0301"
    event = parse_event(encode_event({**GOOD, "session_id": decomposed, "item_id": decomposed}), now_ms=NOW)
    assert event.session_id == event.item_id == "Caf\u00e9"


def test_every_dead_letter_reason_is_listed_and_documented() -> None:
    """The README's list of reasons is the one operators filter on: it must name exactly ``REASONS``."""
    import re
    from pathlib import Path

    import streamrec.events.schema as schema

    raised = {reason for module in Path(schema.__file__).parent.glob("*.py")
              for reason in re.findall(r'InvalidEvent\(\s*"(\w+)"', module.read_text())}
    assert {"not_json", "bad_id"} <= raised <= set(REASONS)
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    documented = re.search(r"`reason` \(a\s+stable code: (.*?)\)", readme, re.S)
    assert documented is not None
    assert re.findall(r"`(\w+)`", documented.group(1)) == list(REASONS)
