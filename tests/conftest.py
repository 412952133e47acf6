"""Shared fixtures. Integration tests run against the real Kafka and Redis that
``streamrec infra up`` starts; if they cannot start, the tests fail rather than skip."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from kafka import KafkaAdminClient

from streamrec.infra.manager import infra_up
from streamrec.infra.redis_cluster import LocalRedisCluster, free_cluster_ports
from streamrec.settings import Settings
from streamrec.stream.datadir import remove_faust_data

if TYPE_CHECKING:
    import pandas as pd

    from tests.models.helpers import MakeData
    from tests.serve.helpers import ServerThread


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """The models under test are small: a second intra-op thread gains nothing, and on cores shared
    with the broker, Redis and workers its spin-waits made training steps 10 to 20 times slower.

    Only once torch is imported (by the test's module, or by an earlier one): importing it here would
    add seconds to every run of the tests that never touch it (events, archive, stream...)."""
    torch = sys.modules.get("torch")
    if torch is None:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def make_data() -> MakeData:
    """``make_data([[1, 2], [2, 3]], n_items=5, timestamps=..., items=...)``: a ``TrainData`` (the model
    and ranking tests).

    Timestamps default to one event per day, counted from the start of each sequence."""
    import numpy as np  # numpy, pandas and the models only for the tests that build data

    from streamrec.models.base import TrainData
    from tests.models.helpers import tiny_items

    def make(
        sequences: Sequence[Sequence[int]],
        n_items: int,
        timestamps: Sequence[Sequence[float]] | None = None,
        items: pd.DataFrame | None = None,
    ) -> TrainData:
        seqs = [np.asarray(s, dtype=np.int32) for s in sequences]
        if timestamps is None:
            stamps = [np.arange(len(s), dtype=np.int64) * 86_400 for s in seqs]
        else:
            stamps = [np.asarray(t, dtype=np.int64) for t in timestamps]
        return TrainData(seqs, stamps, n_items, items if items is not None else tiny_items(n_items))

    return make


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


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory, base_settings: Settings) -> Path:
    """A registry with one ranker version trained on ml-100k, non-neural sources (about a minute on 2
    busy cores, once per session: the serve, stream and bench tests share it)."""
    from streamrec.offline.assemble import PipelineSpec
    from streamrec.offline.ranker_fit import RankerConfig
    from streamrec.offline.ranker_job import RankerJob, run_ranker_job

    root = tmp_path_factory.mktemp("registry")
    spec = PipelineSpec(sources=("itemknn", "mf", "pop", "content"), registry=root, ranker=RankerConfig(epochs=3))
    run_ranker_job(RankerJob(dataset="ml-100k", data_dir=base_settings.data_dir, spec=spec, ablation=False),
                   progress=False)
    return root


@pytest.fixture
def server_factory() -> Iterator[Callable[..., ServerThread]]:
    """``make(settings, wait_loaded_s=120.0, **server_kwargs)``: a started server, stopped after the test."""
    from tests.serve.helpers import ServerThread  # grpc and the server only for the tests that start one

    started: list[ServerThread] = []

    def make(settings: Settings, wait_loaded_s: float | None = 120.0, **kwargs: Any) -> ServerThread:
        s = ServerThread(settings, **kwargs)
        started.append(s)
        return s.start(wait_loaded_s)

    yield make
    for s in started:
        s.stop()


@pytest.fixture
def isolated(infra: Settings) -> Iterator[Settings]:
    """Settings with a topic, consumer group and Redis prefix of this test's own.

    The servers under test get a generous Redis timeout (2 s, not 0.25 s). They share 2 busy cores with
    the broker, the workers, the training and Redis's own rewrites, and a read there can take longer
    than 0.25 s. The server then answers degraded, correctly, but that is not what those tests are
    about (CI once failed ``test_loop_e2e`` so). A dead Redis still answers at once: connection refused."""
    run = uuid.uuid4().hex[:10]
    settings = infra.replace(clicks_topic=f"test.{run}.clicks", dead_letter_topic=f"test.{run}.dlq",
                             app_id=f"test-{run}", redis_prefix=f"test:{run}:", redis_timeout_s=2.0)
    yield settings
    remove_faust_data(settings)
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
