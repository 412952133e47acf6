"""The processor's pure parts: validation into dead letters, grouping, packing."""

from __future__ import annotations

import base64

import orjson

from streamrec.events.schema import EventLimits
from streamrec.stream.processor import DeadLetter, Record, group_by_session, validate
from streamrec.stream.session_store import FIELD, REC, decode_member, pack

NOW = 1_750_000_000_000


def rec(offset: int, value: bytes | None, key: bytes | None = b"s1") -> Record:
    return Record("clicks", 3, offset, key, value)


def event(i: int, session: str = "s1") -> bytes:
    return orjson.dumps({"event_id": f"e{i}", "session_id": session, "item_id": f"i{i}", "event_type": "view",
                         "timestamp": NOW - 100 + i})


def test_validate_splits_good_events_from_dead_letters() -> None:
    records = [rec(0, event(0)), rec(1, b"garbage"), rec(2, None), rec(3, event(3, "s2"), key=b"s1"),
               rec(4, event(4), key=None)]
    good, dead = validate(records, EventLimits(), NOW)
    assert [r.offset for r, _ in good] == [0, 4]
    assert [(d.record.offset, d.reason) for d in dead] == [(1, "not_json"), (2, "empty_payload"), (3, "key_mismatch")]


def test_a_dead_letter_carries_the_whole_payload_and_its_source() -> None:
    raw = b"\xff not utf-8"
    letter = orjson.loads(DeadLetter(rec(9, raw, key=b"k"), "not_json", "bad").encode(NOW))
    assert letter["source"] == {"topic": "clicks", "partition": 3, "offset": 9}
    assert letter["payload"] is None and base64.b64decode(letter["payload_b64"]) == raw
    assert (letter["reason"], letter["detail"], letter["key"], letter["failed_at_ms"]) == ("not_json", "bad", "k", NOW)


def test_group_by_session_keeps_arrival_order_within_each_session() -> None:
    good, _ = validate([rec(i, event(i, f"s{i % 2}"), key=f"s{i % 2}".encode()) for i in range(5)], EventLimits(), NOW)
    groups = group_by_session(good)
    assert {k: [r.offset for r, _ in v] for k, v in groups.items()} == {"s0": [0, 2, 4], "s1": [1, 3]}


def test_pack_joins_records_and_fields_with_separators_ids_cannot_contain() -> None:
    assert pack([("e1", 5, "x"), ("e2", 6, "y")]) == f"e1{FIELD}5{FIELD}x{REC}e2{FIELD}6{FIELD}y"
    assert decode_member(f"{7:019d}{FIELD}Fargo (1996){FIELD}click".encode()) == ("Fargo (1996)", "click")
