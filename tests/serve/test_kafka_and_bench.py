"""End to end through Kafka and the worker, and the load generator against a real server."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from streamrec.bench.serve import ServeBenchConfig, run_serve_bench
from streamrec.serve.servicer import pb2, pb2_grpc
from streamrec.settings import Settings
from streamrec.stream.launcher import WorkerProcess
from tests.serve.helpers import ids, settings_for
from tests.stream.helpers import publish, wait_applied

pytestmark = pytest.mark.integration


def test_a_click_published_to_kafka_changes_the_next_answer(isolated: Settings, registry: Path, tmp_path: Path,
                                                            server_factory: Any) -> None:
    settings = settings_for(isolated, registry)
    running = server_factory(settings)
    now = int(time.time() * 1000)
    click = {"session_id": "k-1", "user_id": None, "event_type": "click"}
    with running.channel() as channel, WorkerProcess(settings, tmp_path / "worker.log"):
        stub = pb2_grpc.RecommenderStub(channel)
        publish(settings, [click | {"event_id": "k1", "item_id": "50", "timestamp": now - 2000}])
        assert wait_applied(settings, 1) == 1
        first = stub.Recommend(pb2.RecommendRequest(session_id="k-1", k=10), timeout=5)
        assert not first.cold_start
        publish(settings, [click | {"event_id": "k2", "item_id": "1", "timestamp": now - 1000}])
        assert wait_applied(settings, 2) == 2
        second = stub.Recommend(pb2.RecommendRequest(session_id="k-1", k=10), timeout=5)
    assert ids(second) != ids(first) and "1" not in ids(second)


def test_bench_serve_reports_latency_and_throughput(isolated: Settings, registry: Path, server_factory: Any) -> None:
    running = server_factory(settings_for(isolated, registry))
    config = ServeBenchConfig(target=running.target, rate=20, seconds=1.0, concurrency=2, sessions=50,
                              dataset="ml-100k")
    result = run_serve_bench(isolated, config)
    for phase in ("fixed_rate", "saturation"):
        r = result[phase]
        assert r["errors"] == 0 and r["qps"] > 0 and 0 < r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["cold_start"] == 0 and r["degraded"] == 0  # every answer ran the pipeline
    assert not result["degraded"] and result["model_versions"]["deepfm"]
