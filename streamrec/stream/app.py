"""Creates the Faust app: broker, consumer group and commit settings come from ``Settings``."""

from __future__ import annotations

from typing import Any, cast

import faust
from faust.sensors import Monitor
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaDriverConsumer
from faust.transport.drivers.aiokafka import Transport as AIOKafkaTransport

from streamrec.kafka_security import faust_app_kwargs
from streamrec.settings import Settings
from streamrec.stream.datadir import faust_datadir

__all__ = ["QuietMonitor", "SessionApp", "create_app"]


class QuietMonitor(Monitor):
    """Faust's monitor without its per-message bookkeeping.

    The default monitor records four timestamps per event for Faust's web views, which we do
    not run; on this 2-core machine that bookkeeping cost a fifth of the worker's throughput.
    Commit, assignment and producer statistics are still kept.
    """

    def on_message_in(self, *args: Any) -> None:
        return None

    def on_stream_event_in(self, *args: Any) -> None:
        return None

    def on_stream_event_out(self, *args: Any) -> None:
        return None

    def on_message_out(self, *args: Any) -> None:
        return None


class _FetchConsumerThread(AIOKafkaConsumerThread):
    """Faust's consumer thread with the fetch settings Faust does not pass on: aiokafka's
    ``fetch_min_bytes`` (left at 1) and ``fetch_max_wait_ms`` (fixed at 1500). The consumer keeps
    both until its ``start`` builds the fetcher, so they are set on it right after it is created."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        app = cast(SessionApp, self.app)
        consumer._fetch_min_bytes, consumer._fetch_max_wait_ms = app.fetch_min_bytes, app.fetch_max_wait_ms
        return consumer


class _FetchConsumer(AIOKafkaDriverConsumer):
    def _new_consumer_thread(self) -> AIOKafkaConsumerThread:
        return _FetchConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _FetchTransport(AIOKafkaTransport):
    Consumer = _FetchConsumer


class SessionApp(faust.App):
    """The worker's Faust app: Faust's own, with the broker's fetch settings of ``Settings``.

    ``fetch_min_bytes`` above 1 lets the broker hold a fetch until that much data is there or
    ``fetch_max_wait_ms`` has passed: fewer, larger fetches. Each fetch costs the worker a round of
    Faust's consumer thread whatever it holds, so at a moderate rate this is most of its CPU
    (docs/operations.md has the trade of CPU against freshness, measured)."""

    def __init__(self, *args: Any, fetch_min_bytes: int = 1, fetch_max_wait_ms: int = 1500, **kwargs: Any) -> None:
        self.fetch_min_bytes, self.fetch_max_wait_ms = fetch_min_bytes, fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> Any:
        return _FetchTransport(self.conf.broker_consumer, self)


def create_app(settings: Settings) -> faust.App:
    """The worker's app, its data directory under ``STREAMREC_HOME`` (``streamrec.stream.datadir``)."""
    datadir = faust_datadir(settings)
    datadir.parent.mkdir(parents=True, exist_ok=True)  # Faust makes the last level only
    app = SessionApp(
        settings.app_id,
        datadir=datadir,
        **faust_app_kwargs(settings.kafka_access),
        store="memory://",
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_commit_interval=settings.commit_interval_s,
        broker_max_poll_records=max(settings.batch_max, 500),
        consumer_max_fetch_size=settings.kafka_max_message_bytes,  # per partition: the largest record the topic takes
        producer_max_request_size=settings.kafka_max_message_bytes,  # dead letters are capped to fit
        stream_buffer_maxsize=max(4 * settings.batch_max, 4096),
        producer_acks=-1,
        producer_compression_type=None if settings.compression == "none" else settings.compression,
        producer_linger_ms=0,
        fetch_min_bytes=settings.fetch_min_bytes,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
    )
    app.monitor = QuietMonitor()
    return app
