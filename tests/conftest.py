"""Shared fixtures. Integration tests run against the real Kafka and Redis that
``streamrec infra up`` starts; if they cannot start, the tests fail rather than skip."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
import torch
from kafka import KafkaAdminClient

from streamrec.infra import infra_up
from streamrec.infra.redis_cluster import LocalRedisCluster, free_cluster_ports
from streamrec.settings import Settings


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The models under test are small: a second intra-op thread gains nothing, and on cores shared
    with the broker, Redis and workers its spin-waits made training steps 10 to 20 times slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def base_settings() -> Settings:
    return Settings.from_env()


@pytest.fixture(scope="session")
def infra(base_settings: Settings) -> Settings:
    """Kafka and Redis up and healthy (idempotent: reuses running ones)."""
    statuses = infra_up(base_settings)
    assert all(s.healthy for s in statuses), statuses
    return base_settings


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    """A real three-node Redis Cluster on loopback ports of its own, for this test session only."""
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("redis-cluster"), free_cluster_ports(3))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def isolated(infra: Settings) -> Iterator[Settings]:
    """Settings with a topic, consumer group and Redis prefix of this test's own."""
    run = uuid.uuid4().hex[:10]
    settings = infra.replace(clicks_topic=f"test.{run}.clicks", dead_letter_topic=f"test.{run}.dlq",
                             app_id=f"test-{run}", redis_prefix=f"test:{run}:")
    yield settings
    client = redis.Redis.from_url(settings.redis_address)
    keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=5000))
    for i in range(0, len(keys), 1000):
        client.unlink(*keys[i:i + 1000])
    client.close()
    admin = KafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    try:
        existing = set(admin.list_topics())
        doomed = [t for t in (settings.clicks_topic, settings.dead_letter_topic) if t in existing]
        if doomed:
            admin.delete_topics(doomed)
    finally:
        admin.close()
