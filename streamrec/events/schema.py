"""The click event and its strict parser.

Events arrive from outside as JSON bytes. ``parse_event`` either returns a ``ClickEvent``
or raises ``InvalidEvent`` with a stable ``reason`` code; it never raises anything else,
whatever the input (a property the tests check with hypothesis). The reason codes name the
dead-letter categories.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, get_args

import orjson

from streamrec.errors import InvalidEvent
from streamrec.events.ids import MAX_ID_BYTES, check_id

__all__ = ["EVENT_TYPES", "REASONS", "ClickEvent", "EventLimits", "EventType", "encode_event", "parse_event"]

EventType = Literal["view", "click", "add_to_cart", "purchase"]
EVENT_TYPES: Final[frozenset[str]] = frozenset(get_args(EventType))

# Every reason a dead letter can give (README, "Click events"): ``parse_event``'s, then the worker's
# checks of the Kafka record around it (``streamrec.stream.processor.validate``).
REASONS: Final = ("not_json", "not_object", "missing_field", "unknown_field", "wrong_type", "unknown_event_type",
                  "absurd_timestamp", "oversized", "empty_id", "id_too_long", "bad_id",
                  "empty_payload", "missing_key", "key_mismatch")

_REQUIRED: Final = ("event_id", "session_id", "item_id", "event_type", "timestamp")
_ALLOWED: Final = frozenset(_REQUIRED + ("user_id",))


@dataclass(frozen=True, slots=True)
class ClickEvent:
    event_id: str
    session_id: str
    item_id: str
    event_type: EventType
    timestamp: int  # milliseconds since the epoch
    user_id: str | None = None


@dataclass(frozen=True)
class EventLimits:
    max_bytes: int = 4096
    max_id_len: int = MAX_ID_BYTES  # bytes of UTF-8 (streamrec.events.ids)
    min_timestamp_ms: int = 631152000000  # 1990-01-01
    max_future_skew_ms: int = 86_400_000


def parse_event(raw: bytes | str, limits: EventLimits = EventLimits(), now_ms: int | None = None) -> ClickEvent:
    """Validate one wire event. ``now_ms`` is injectable so tests control "the future"."""
    size = len(raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
    if size > limits.max_bytes:
        raise InvalidEvent("oversized", f"payload is {size} bytes, the limit is {limits.max_bytes}")
    try:
        doc = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError, UnicodeError) as exc:
        raise InvalidEvent("not_json", f"payload is not valid UTF-8 JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise InvalidEvent("not_object", f"payload must be a JSON object, got {type(doc).__name__}")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise InvalidEvent("missing_field", f"missing required field(s): {', '.join(missing)}")
    unknown = sorted(k for k in doc if k not in _ALLOWED)
    if unknown:
        raise InvalidEvent("unknown_field", f"unknown field(s): {', '.join(unknown[:5])}")
    event_id, session_id, item_id = (check_id(doc[name], name, max_bytes=limits.max_id_len, session=name == "session_id")
                                     for name in ("event_id", "session_id", "item_id"))
    user_id = doc.get("user_id")
    if user_id is not None:
        user_id = check_id(user_id, "user_id", max_bytes=limits.max_id_len)
    event_type = doc["event_type"]
    if not isinstance(event_type, str):
        raise InvalidEvent("wrong_type", f"event_type must be a string, got {_kind(event_type)}")
    if event_type not in EVENT_TYPES:
        raise InvalidEvent("unknown_event_type", f"event_type {event_type[:40]!r} is not one of {', '.join(sorted(EVENT_TYPES))}")
    ts = doc["timestamp"]
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise InvalidEvent("wrong_type", f"timestamp must be an integer of milliseconds, got {_kind(ts)}")
    now = int(time.time() * 1000) if now_ms is None else now_ms
    if ts < limits.min_timestamp_ms:
        hint = " (it looks like seconds; send milliseconds)" if ts > limits.min_timestamp_ms // 1000 else ""
        raise InvalidEvent("absurd_timestamp", f"timestamp {ts} is before 1990{hint}")
    if ts > now + limits.max_future_skew_ms:
        raise InvalidEvent("absurd_timestamp", f"timestamp {ts} is more than {limits.max_future_skew_ms} ms in the future")
    return ClickEvent(event_id, session_id, item_id, event_type, ts, user_id)


def encode_event(event: ClickEvent | dict[str, Any]) -> bytes:
    """The wire form: compact JSON, ``user_id`` omitted when absent."""
    doc = asdict(event) if isinstance(event, ClickEvent) else event
    return orjson.dumps({k: v for k, v in doc.items() if v is not None})


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__
