"""The processor's pure parts: validation into dead letters, grouping, packing."""

from __future__ import annotations

import base64

import orjson
import pytest

from streamrec.errors import ConfigError
from streamrec.events.schema import EventLimits
from streamrec.settings import Settings
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
               rec(4, event(4), key=None), rec(5, event(5))]
    good, dead = validate(records, EventLimits(), NOW)
    assert [r.offset for r, _ in good] == [0, 5]
    assert [(d.record.offset, d.reason) for d in dead] == [(1, "not_json"), (2, "empty_payload"), (3, "key_mismatch"),
                                                          (4, "missing_key")]  # a keyless record could land anywhere


def test_the_key_is_compared_with_the_session_id_in_nfc_as_the_worker_stores_it() -> None:
    nfd, nfc = "Cafe\u0301", "Caf\u00e9"
    records = [rec(0, event(0, nfd), key=nfd.encode()), rec(1, event(1, nfd), key=nfc.encode()),
               rec(2, event(2, nfc), key=b"\xff"), rec(3, event(3, "}x"), key=b"}x")]
    good, dead = validate(records, EventLimits(), NOW)
    assert [(r.offset, e.session_id) for r, e in good] == [(0, nfc), (1, nfc)]
    assert [(d.record.offset, d.reason) for d in dead] == [(2, "key_mismatch"), (3, "bad_id")]


def test_a_dead_letter_carries_the_payload_once_with_its_source_in_body_and_headers() -> None:
    raw = b"\xff not utf-8"
    message = DeadLetter(rec(9, raw, key=b"k"), "not_json", "bad").encode(NOW, max_payload_bytes=1024)
    letter = orjson.loads(message.value)
    assert letter == {"reason": "not_json", "detail": "bad", "source": {"topic": "clicks", "partition": 3, "offset": 9},
                      "key": "k", "payload_b64": base64.b64encode(raw).decode(), "payload_bytes": len(raw),
                      "truncated": False, "failed_at_ms": NOW}
    assert message.key == b"k"
    assert dict(message.headers) == {"streamrec.error.reason": b"not_json", "streamrec.error.detail": b"bad",
                                     "streamrec.error.topic": b"clicks", "streamrec.error.partition": b"3",
                                     "streamrec.error.offset": b"9", "streamrec.error.failed_at_ms": str(NOW).encode(),
                                     "streamrec.error.truncated": b"false"}


def test_a_dead_letter_of_a_huge_record_is_cut_to_its_cap_and_says_so() -> None:
    """A 900 KB record made a 2.4 MB dead letter (text and base64 of it), larger than the topic takes:
    its send failed and crashed the agent on every restart."""
    raw = orjson.dumps({"event_id": "e", "session_id": "s1", "item_id": "é" * 450_000})
    key = b"k" * 5000
    message = DeadLetter(rec(7, raw, key=key), "oversized", "x" * 50_000).encode(NOW, max_payload_bytes=65536)
    letter = orjson.loads(message.value)
    assert base64.b64decode(letter["payload_b64"]) == raw[:65536]
    assert letter["truncated"] is True and letter["payload_bytes"] == len(raw)
    assert dict(message.headers)["streamrec.error.truncated"] == b"true"
    size = len(message.value) + len(message.key or b"") + sum(len(k) + len(v) for k, v in message.headers)
    assert size <= 65536 * 4 // 3 + 32768  # the bound Settings.validate keeps under the topic's limit


def test_group_by_session_keeps_arrival_order_within_each_session() -> None:
    good, _ = validate([rec(i, event(i, f"s{i % 2}"), key=f"s{i % 2}".encode()) for i in range(5)], EventLimits(), NOW)
    groups = group_by_session(good)
    assert {k: [r.offset for r, _ in v] for k, v in groups.items()} == {"s0": [0, 2, 4], "s1": [1, 3]}


def test_pack_joins_records_and_fields_with_separators_ids_cannot_contain() -> None:
    assert pack([("e1", 5, "x"), ("e2", 6, "y")]) == f"e1{FIELD}5{FIELD}x{REC}e2{FIELD}6{FIELD}y"
    assert decode_member(f"{7:019d}{FIELD}Fargo (1996){FIELD}click".encode()) == ("Fargo (1996)", "click")


def test_settings_refuse_a_dead_letter_cap_that_would_not_fit_the_topic() -> None:
    Settings(kafka_max_message_bytes=1048576, dead_letter_payload_bytes=65536).validate()
    with pytest.raises(ConfigError, match="DEAD_LETTER_PAYLOAD_BYTES"):
        Settings(kafka_max_message_bytes=100_000, dead_letter_payload_bytes=65536).validate()
