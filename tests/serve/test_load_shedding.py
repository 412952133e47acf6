"""Load shedding over real gRPC: a flood against a server whose pipeline is held at a gate ends, every
request of it, in an answer or a clear RESOURCE_EXHAUSTED; the liveness probe passes throughout, and
the readiness check is SERVING once the queue is refused. While the flood holds every place, grpc.aio's
concurrency bound refuses a health check too, before any handler runs: the probe counts that as alive.
(The queue bound and the queue timeout themselves: tests/serve/test_batcher.py.)"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamrec.infra.processes import wait_until
from streamrec.rank.pipeline import Pipeline, Query, Recommendation
from streamrec.serve.health_probe import check, healthy
from streamrec.serve.loader import RegistryLoader
from streamrec.serve.servicer import pb2, pb2_grpc
from streamrec.serve.state import ServingState
from streamrec.settings import Settings
from tests.serve.helpers import settings_for

pytestmark = pytest.mark.integration

N = 40  # requests in the flood: more than a running batch and the queue (MAX_QUEUE) together
MAX_QUEUE = 8


def health(channel: grpc.Channel, service: str = "streamrec.v1.Recommender") -> int:
    return int(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                          timeout=2).status)


class _GatedPipeline:
    """The real pipeline, entered only once the test opens ``loader.gate``."""

    def __init__(self, inner: Pipeline, loader: GatedLoader) -> None:
        self.inner = inner
        self.loader = loader

    def recommend_many(self, queries: Sequence[Query]) -> list[list[Recommendation]]:
        with self.loader.changed:
            self.loader.entered += len(queries)
            self.loader.changed.notify_all()
        assert self.loader.gate.wait(60), "the test never opened the gate"
        return self.inner.recommend_many(queries)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class GatedLoader(RegistryLoader):
    """The registry's release, loaded and checked as usual, served through a ``_GatedPipeline``."""

    def __init__(self, registry: Path) -> None:
        super().__init__(registry)
        self.gate = threading.Event()
        self.changed = threading.Condition()  # told when a pass is entered and when a call ends
        self.entered = 0  # queries that reached the pipeline
        self._gated: dict[int, ServingState] = {}

    def load(self, version: str | None = None) -> ServingState:
        state = super().load(version)
        if id(state) not in self._gated:  # the same state each poll: the watcher sees no new version
            self._gated[id(state)] = dataclasses.replace(state, pipeline=_GatedPipeline(state.pipeline, self))
        return self._gated[id(state)]


def test_a_flood_is_answered_or_refused_at_once_never_left_waiting_and_health_stays_serving(
        isolated: Settings, registry: Path, server_factory: Any) -> None:
    loader = GatedLoader(registry)
    settings = settings_for(isolated, registry, serve_workers=1, serve_max_batch=4, serve_max_queue=MAX_QUEUE,
                            serve_queue_timeout_ms=500.0)
    running = server_factory(settings, loader=loader)
    request = pb2.RecommendForSequenceRequest(item_ids=["50", "181", "172"], k=10)  # known items: the pipeline runs
    outcomes: list[tuple[grpc.StatusCode, str]] = []

    def ended(call: Any) -> None:
        with loader.changed:
            outcomes.append((call.code(), call.details() or ""))
            loader.changed.notify_all()

    try:
        with running.channel() as channel:
            stub = pb2_grpc.RecommenderStub(channel)
            # no deadline: the queue timeout applies
            calls = [stub.RecommendForSequence.future(request) for _ in range(N)]
            for call in calls:
                call.add_done_callback(ended)
            assert healthy("", status := check(channel, "", timeout_s=2)), status  # a place free or not
            with loader.changed:  # the pipeline is still shut: all but the running batch end, refused
                assert loader.changed.wait_for(lambda: loader.entered and len(outcomes) == N - loader.entered, 60), \
                    f"requests left waiting: {N - len(outcomes)} of {N} unanswered, {loader.entered} in the pipeline"
            assert health(channel) == health_pb2.HealthCheckResponse.SERVING
            assert health(channel, "") == health_pb2.HealthCheckResponse.SERVING
            loader.gate.set()
            with loader.changed:
                assert loader.changed.wait_for(lambda: len(outcomes) == N, 60), "the running batch never answered"
            after = stub.RecommendForSequence(request, timeout=10)  # the flood is over: served again
            assert len(after.items) == 10
    finally:
        loader.gate.set()

    codes = [code for code, _ in outcomes]
    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
    assert codes.count(grpc.StatusCode.OK) == loader.entered - 1  # the running batch (the last one: `after`)
    refusals = [details for code, details in outcomes if code is grpc.StatusCode.RESOURCE_EXHAUSTED]
    full = [d for d in refusals if f"STREAMREC_SERVE_MAX_QUEUE={MAX_QUEUE}" in d]
    late = [d for d in refusals if "queue timeout of 500 ms" in d]
    # past MAX_QUEUE + MAX_BATCH in progress, grpc.aio refuses before our code runs (a burst may get there)
    limited = [d for d in refusals if d == "Concurrent RPC limit exceeded!"]
    assert full and late and len(full) + len(late) + len(limited) == len(refusals), refusals
    assert all(d.startswith("the server is overloaded") and "retry with backoff" in d for d in full + late)
    metrics = running.server.metrics.registry
    for reason, seen in (("queue_full", full), ("queue_timeout", late)):
        assert metrics.get_sample_value("streamrec_shed_requests_total",
                                        {"rpc": "RecommendForSequence", "reason": reason}) == len(seen)


def test_a_burst_that_piles_up_in_grpc_core_is_refused_with_a_clear_status_not_cancelled(
        isolated: Settings, registry: Path, server_factory: Any) -> None:
    """While a batch holds the event loop, a burst of 1,500 calls waits in gRPC core, past the 1,000 at
    which core would drop new ones as CANCELLED, with no message. Once the loop is free, each is
    answered or refused with RESOURCE_EXHAUSTED."""
    burst = 1_500
    loader = GatedLoader(registry)
    settings = settings_for(isolated, registry, serve_workers=0, serve_max_batch=4)  # batches on the loop
    running = server_factory(settings, loader=loader)
    request = pb2.RecommendForSequenceRequest(item_ids=["50", "181", "172"], k=10)
    backlog = running.server.core_backlog
    assert backlog is not None and backlog.backlog() == 0
    try:
        with running.channel() as channel:
            stub = pb2_grpc.RecommenderStub(channel)
            first = stub.RecommendForSequence.future(request, timeout=60)
            with loader.changed:  # the first batch now holds the loop at the gate
                assert loader.changed.wait_for(lambda: loader.entered, 60)
            calls = [stub.RecommendForSequence.future(request, timeout=60) for _ in range(burst)]
            assert wait_until(lambda: backlog.backlog() == burst, 60, 0.01), backlog.backlog()  # all in core, none taken in
            loader.gate.set()
            assert first.result().items
            codes = [call.code() for call in calls]  # each waits for its call's end
    finally:
        loader.gate.set()
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, \
        {code: codes.count(code) for code in set(codes)}
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes  # past the in-flight bound
