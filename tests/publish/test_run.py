"""The publish loop, through a producer seam that records what it was given."""

from __future__ import annotations

import orjson

from streamrec.publish.producer import PublishStats
from streamrec.publish.run import publish, session_key

GOOD = orjson.dumps({"event_id": "e", "session_id": "s9", "item_id": "i", "event_type": "view",
                     "timestamp": 1_700_000_000_000})
BAD = orjson.dumps({"event_id": "e", "session_id": "s9", "item_id": "i", "event_type": "like",
                    "timestamp": 1_700_000_000_000})


class RecordingProducer:
    def __init__(self) -> None:
        self.stats = PublishStats()
        self.sent: list[tuple[bytes, bytes | None]] = []

    def send(self, value: bytes, key: bytes | None) -> None:
        self.sent.append((value, key))
        self.stats.sent += 1

    def flush(self) -> None:
        pass


def test_valid_events_are_keyed_by_session_and_invalid_ones_reported() -> None:
    producer = RecordingProducer()
    report = publish([(1, GOOD), (2, BAD), (3, b"{")], producer, progress=False)  # type: ignore[arg-type]
    assert producer.sent == [(GOOD, b"s9")]
    assert [line for line, _ in report.invalid] == [2, 3]
    assert "unknown_event_type" in report.invalid[0][1]


def test_without_validation_everything_is_sent_as_is() -> None:
    producer = RecordingProducer()
    publish([(1, GOOD), (2, BAD), (3, b"{")], producer, validate=False, progress=False)  # type: ignore[arg-type]
    assert producer.sent == [(GOOD, b"s9"), (BAD, b"s9"), (b"{", None)]


def test_session_key_survives_any_payload() -> None:
    assert session_key(b"[1]") is None and session_key(b'{"session_id": 5}') is None
    assert session_key(b"\xff") is None and session_key(GOOD) == b"s9"
