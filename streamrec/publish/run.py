"""The publish loop: validate, key by session, pace, show progress."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import orjson
from tqdm import tqdm

from streamrec.errors import InvalidEvent
from streamrec.events.schema import EventLimits, parse_event
from streamrec.publish.producer import EventProducer, Pacer, PublishStats

__all__ = ["PublishReport", "publish"]


@dataclass
class PublishReport:
    stats: PublishStats
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    seconds: float = 0.0


def session_key(payload: bytes) -> bytes | None:
    """The session id of a payload that may be invalid; None if it has none."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    sid = doc.get("session_id") if isinstance(doc, dict) else None
    return sid.encode() if isinstance(sid, str) and sid else None


def publish(source: Iterable[tuple[int, bytes]], producer: EventProducer, *, rate: float = 0.0,
            validate: bool = True, limits: EventLimits = EventLimits(), total: int | None = None,
            progress: bool = True) -> PublishReport:
    """Send every payload of ``source``. With ``validate``, invalid ones are reported, not sent;
    without it they are sent as they are (the worker dead-letters them)."""
    report = PublishReport(producer.stats)
    pacer = Pacer(rate)
    bar = tqdm(total=total, unit="ev", disable=not progress, smoothing=0.1, dynamic_ncols=True)
    started = time.perf_counter()
    try:
        for line_no, payload in source:
            if validate:
                try:
                    event = parse_event(payload, limits)
                except InvalidEvent as exc:
                    report.invalid.append((line_no, str(exc)))
                    continue
                key: bytes | None = event.session_id.encode()
            else:
                key = session_key(payload)
            pacer.wait()
            producer.send(payload, key)
            bar.update()
        producer.flush()
    finally:
        report.seconds = time.perf_counter() - started
        bar.close()
    return report
