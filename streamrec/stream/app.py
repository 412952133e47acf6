"""Creates the Faust app: broker, consumer group and commit settings come from ``Settings``."""

from __future__ import annotations

from typing import Any

import faust
from faust.sensors import Monitor

from streamrec.kafka_security import faust_app_kwargs
from streamrec.settings import Settings

__all__ = ["QuietMonitor", "create_app"]


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


def create_app(settings: Settings) -> faust.App:
    app = faust.App(
        settings.app_id,
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
    )
    app.monitor = QuietMonitor()
    return app
