"""Creates the Faust app: broker, consumer group and commit settings come from ``Settings``."""

from __future__ import annotations

import faust

from streamrec.settings import Settings

__all__ = ["create_app"]


def create_app(settings: Settings) -> faust.App:
    return faust.App(
        settings.app_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        store="memory://",
        web_enabled=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_heartbeat_interval=settings.heartbeat_interval_s,
        broker_commit_interval=settings.commit_interval_s,
        broker_max_poll_records=max(settings.batch_max, 500),
        stream_buffer_maxsize=max(4 * settings.batch_max, 4096),
        producer_acks=-1,
        producer_compression_type=None if settings.compression == "none" else settings.compression,
        producer_linger_ms=0,
    )
