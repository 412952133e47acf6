"""The Kafka topics: created up front with the configured partition count, and their Faust handles."""

from __future__ import annotations

import logging

import faust
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import InvalidReplicationFactorError, KafkaError, TopicAlreadyExistsError

from streamrec.errors import InfraError
from streamrec.kafka_security import kafka_python_kwargs
from streamrec.settings import Settings

__all__ = ["Topics", "ensure_topics"]

log = logging.getLogger(__name__)


def ensure_topics(settings: Settings) -> None:
    """Create the clicks and dead-letter topics if missing (idempotent).

    Both are created explicitly, not left to broker auto-creation, so the clicks topic gets
    ``topic_partitions`` partitions: that count is the ceiling on parallel workers. Both take records
    of up to ``kafka_max_message_bytes`` (``max.message.bytes``), the size the worker fetches and the
    producers send: the worker sees whatever the topic accepted, and its dead letters fit theirs.
    Topics that already exist are left as they are. Each gets ``topic_replication_factor`` replicas
    (``STREAMREC_TOPIC_REPLICATION_FACTOR``: 1 for the local broker, 3 on a cluster).
    """
    try:
        admin = KafkaAdminClient(**kafka_python_kwargs(settings.kafka_access), client_id="streamrec-admin",
                                 request_timeout_ms=15000)
    except KafkaError as exc:
        raise InfraError(f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc}). Is it up? Try: streamrec infra up") from exc
    try:
        existing = set(admin.list_topics())
        config = {"max.message.bytes": str(settings.kafka_max_message_bytes)}
        wanted = [NewTopic(name, settings.topic_partitions, settings.topic_replication_factor, topic_configs=config)
                  for name in (settings.clicks_topic, settings.dead_letter_topic) if name not in existing]
        if wanted:
            try:
                admin.create_topics(wanted)
                log.info("created topics %s", [t.name for t in wanted])
            except TopicAlreadyExistsError:
                pass
            except InvalidReplicationFactorError as exc:
                raise InfraError(f"cannot create {', '.join(t.name for t in wanted)} with replication factor "
                                 f"{settings.topic_replication_factor} ({exc}); set STREAMREC_TOPIC_REPLICATION_FACTOR "
                                 "to at most the number of brokers") from exc
    finally:
        admin.close()


class Topics:
    """Faust handles on the topics. Values stay raw bytes: parsing is ours, so bad input
    reaches the dead-letter topic instead of Faust's own decode-error path."""

    def __init__(self, app: faust.App, settings: Settings) -> None:
        self.clicks = app.topic(settings.clicks_topic, key_type=bytes, value_type=bytes,
                                key_serializer="raw", value_serializer="raw", partitions=settings.topic_partitions)
        self.dead_letters = app.topic(settings.dead_letter_topic, key_type=bytes, value_type=bytes,
                                      key_serializer="raw", value_serializer="raw", partitions=settings.topic_partitions)
