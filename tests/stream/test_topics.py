"""Topic creation against the real broker: the replication factor is a setting that reaches it."""

from __future__ import annotations

import pytest
from kafka.admin import KafkaAdminClient

from streamrec.errors import InfraError
from streamrec.settings import Settings
from streamrec.stream.topics import ensure_topics

pytestmark = pytest.mark.integration


def test_topics_get_the_configured_partitions_and_replicas(isolated: Settings) -> None:
    ensure_topics(isolated.replace(topic_partitions=3))
    admin = KafkaAdminClient(bootstrap_servers=isolated.kafka_bootstrap)
    try:
        described = {t["name"]: t for t in admin.describe_topics([isolated.clicks_topic, isolated.dead_letter_topic])}
    finally:
        admin.close()
    for name in (isolated.clicks_topic, isolated.dead_letter_topic):
        partitions = described[name]["partitions"]
        assert len(partitions) == 3 and all(len(p["replica_nodes"]) == 1 for p in partitions)


def test_a_replication_factor_the_cluster_cannot_meet_is_a_clear_error(isolated: Settings) -> None:
    """One local broker cannot hold two replicas: the setting must reach the broker, not be replaced by 1."""
    with pytest.raises(InfraError, match="STREAMREC_TOPIC_REPLICATION_FACTOR"):
        ensure_topics(isolated.replace(topic_replication_factor=2))
