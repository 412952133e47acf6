"""A kafka-python producer set up for clicks: acks=all, idempotent, compressed, keyed by session."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from streamrec.errors import InfraError
from streamrec.kafka_security import kafka_python_kwargs
from streamrec.settings import Settings

__all__ = ["EventProducer", "PublishStats", "Pacer"]

log = logging.getLogger(__name__)


@dataclass
class PublishStats:
    sent: int = 0
    acked: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class Pacer:
    """Spaces sends to a target rate without drifting: event i is due at start + i / rate."""

    def __init__(self, rate: float, clock: Any = time.perf_counter, sleep: Any = time.sleep) -> None:
        self.rate, self.clock, self.sleep = rate, clock, sleep
        self.start: float | None = None
        self.count = 0

    def wait(self) -> None:
        if self.rate <= 0:
            return
        now = self.clock()
        if self.start is None:
            self.start = now
        due = self.start + self.count / self.rate
        if due > now:
            self.sleep(due - now)
        self.count += 1


class EventProducer:
    """Sends wire events; delivery failures are counted, and ``close`` waits for every ack."""

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        config: dict[str, Any] = dict(
            **kafka_python_kwargs(settings.kafka_access),
            acks="all",
            enable_idempotence=True,
            compression_type=None if settings.compression == "none" else settings.compression,
            linger_ms=2,
            batch_size=128 * 1024,
            max_request_size=settings.kafka_max_message_bytes,  # what the clicks topic takes (its max.message.bytes)
            max_in_flight_requests_per_connection=5,
            retries=2**31 - 1,
            client_id="streamrec-publisher",
        )
        config.update(overrides)
        try:
            self._producer = KafkaProducer(**config)
        except KafkaError as exc:
            raise InfraError(f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc}). Try: streamrec infra up") from exc
        self.topic = settings.clicks_topic
        self.stats = PublishStats()
        self._lock = threading.Lock()

    def send(self, value: bytes, key: bytes | None) -> None:
        future = self._producer.send(self.topic, value=value, key=key)
        self.stats.sent += 1
        future.add_callback(self._on_ack).add_errback(self._on_error)

    def _on_ack(self, _metadata: Any) -> None:
        with self._lock:
            self.stats.acked += 1

    def _on_error(self, exc: BaseException) -> None:
        with self._lock:
            self.stats.failed += 1
            if len(self.stats.errors) < 10:
                self.stats.errors.append(repr(exc))

    def flush(self, timeout_s: float | None = None) -> None:
        self._producer.flush(timeout=timeout_s)

    def close(self, timeout_s: float = 60.0) -> PublishStats:
        self._producer.flush(timeout=timeout_s)
        self._producer.close(timeout=timeout_s)
        return self.stats

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
