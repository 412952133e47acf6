"""The I/O of ``streamrec live``: test sessions from MovieLens, clicks to Kafka, sessions from Redis, answers
over gRPC. The decisions (which sessions, in what order, how the answers score) are in ``live``."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import redis
from grpc_health.v1 import health_pb2, health_pb2_grpc
from kafka.errors import KafkaError
from redis.exceptions import RedisError

from streamrec.demo.live import (
    LiveSession,
    Scoreboard,
    StepResult,
    choose_sessions,
    interleave,
    sessions_of,
    step_event,
)
from streamrec.errors import ConfigError, InfraError
from streamrec.events.schema import encode_event
from streamrec.publish.producer import EventProducer, Pacer
from streamrec.serve.client import ClientTLS, open_channel, recommend
from streamrec.settings import Settings
from streamrec.stream.session_store import session_keys
from streamrec.stream.topics import ensure_topics

__all__ = ["LiveConfig", "LivePlan", "plan_live", "run_live"]

SERVICE = "streamrec.v1.Recommender"


@dataclass(frozen=True)
class LiveConfig:
    target: str  # the gRPC server, host:port
    sessions: int = 20
    rate: float = 5.0  # clicks per second over all sessions; 0 = as fast as the stack answers
    k: int = 10
    dataset: str | None = None  # None: the dataset of the registry's CURRENT ranker
    seed: int = 0
    min_clicks: int = 3
    max_clicks: int = 20  # longer sessions are cut, so a few long ones cannot take the whole run
    apply_timeout_s: float = 10.0  # how long a click may take to reach Redis through Kafka and the worker
    rpc_timeout_s: float = 2.0
    wait_server_s: float = 180.0  # for the server to report its pipeline loaded (health SERVING)
    tls: ClientTLS = field(default_factory=ClientTLS)

    def __post_init__(self) -> None:
        if self.sessions < 1 or self.k < 1 or self.rate < 0 or not 2 <= self.min_clicks <= self.max_clicks:
            raise ConfigError("live needs --sessions >= 1, --k >= 1, --rate >= 0 and 2 <= --min-clicks <= --max-clicks")


@dataclass(frozen=True)
class LivePlan:
    sessions: list[LiveSession]
    titles: dict[str, str]
    dataset: str
    protocol: str  # the split the sessions come from, in words
    held_out: bool  # the served models were fitted on this very split, so none saw these clicks


def plan_live(settings: Settings, config: LiveConfig) -> LivePlan:
    """Draw the test sessions of the session protocol (the last days of the log).

    When the registry's ranker was fitted under that protocol, its own split is rebuilt, so the
    sessions are exactly ones no model saw. A ranker fitted under leave-one-out saw most of every
    user's history, test period included; ``held_out`` says so rather than hiding it.
    """
    from streamrec.data.datasets import load
    from streamrec.data.names import DEFAULT_DATASET
    from streamrec.eval.protocols import DEFAULT_TEST_DAYS, SessionSplit, protocol_from_summary, split
    from streamrec.serve.client import dataset_of, titles_of

    served = dataset_of(settings.registry)
    dataset = config.dataset or served or DEFAULT_DATASET
    if dataset not in DEFAULT_TEST_DAYS:
        raise ConfigError(f"no session protocol for dataset {dataset!r}; use one of {', '.join(DEFAULT_TEST_DAYS)}")
    trained = _ranker_protocol(settings.registry) if dataset == served else {}
    protocol = protocol_from_summary(trained) if trained.get("protocol") == SessionSplit.name else None
    if not isinstance(protocol, SessionSplit) or protocol.exclude_history:
        days = DEFAULT_TEST_DAYS[dataset]
        protocol = SessionSplit(test_days=days, validation_days=days)
    data = load(dataset, settings.data_dir)
    parts = split(data, protocol)
    run_id = uuid.uuid4().hex[:6]
    sessions = choose_sessions(sessions_of(parts.test, data.vocab), config.sessions, run_id=run_id, seed=config.seed,
                               min_clicks=config.min_clicks, max_clicks=config.max_clicks)
    if not sessions:
        raise ConfigError(f"no test session of {dataset} has {config.min_clicks} clicks or more")
    held_out = trained.get("protocol") == SessionSplit.name and protocol == protocol_from_summary(trained)
    return LivePlan(sessions, titles_of(dataset, settings.data_dir), dataset, str(parts.summary["description"]),
                    held_out)


def _ranker_protocol(registry: Path) -> dict[str, Any]:
    from streamrec.registry import RANKER, current_manifest

    try:
        return dict((current_manifest(registry, RANKER) or {}).get("protocol") or {})
    except (ValueError, TypeError):
        return {}


def run_live(settings: Settings, config: LiveConfig, plan: LivePlan,
             on_result: Callable[[StepResult, Scoreboard], None] = lambda r, b: None,
             clock: Callable[[], float] = time.perf_counter) -> dict[str, Any]:
    """Replay the plan's sessions click by click and score every answer; returns the summary."""
    ensure_topics(settings)
    board = Scoreboard(config.k)
    versions: dict[str, str] = {}
    pacer = Pacer(config.rate)
    started = clock()
    with (EventProducer(settings, linger_ms=0, client_id="streamrec-live") as producer,
          redis.Redis.from_url(settings.redis_address, socket_timeout=5.0) as store,
          open_channel(config.target, config.tls) as channel):
        wait_serving(channel, config.target, config.wait_server_s)
        for step in interleave(plan.sessions):
            pacer.wait()
            sent = clock()
            try:
                producer.send(encode_event(step_event(step, int(time.time() * 1000))),
                              step.session.session_id.encode())
                producer.flush(config.apply_timeout_s)
                _wait_applied(store, settings.redis_prefix, step.session.session_id, step.position + 1,
                              config.apply_timeout_s)
            except (KafkaError, RedisError) as exc:
                raise InfraError(f"a click could not go through Kafka and Redis ({type(exc).__name__}: {exc}); "
                                 "are they up? Try: streamrec infra status") from exc
            applied = clock()
            response = recommend(channel, step.session.session_id, config.k, timeout_s=config.rpc_timeout_s)
            answered = clock()
            versions = dict(response.model_versions)
            result = StepResult(step, tuple(i.item_id for i in response.items), (answered - applied) * 1000,
                                (applied - sent) * 1000, versions, bool(response.degraded))
            board.record(result)
            on_result(result, board)
        if producer.stats.failed:
            raise InfraError(f"{producer.stats.failed} click(s) were not delivered to Kafka: {producer.stats.errors}")
    return board.summary() | {
        "sessions": len(plan.sessions), "dataset": plan.dataset, "protocol": plan.protocol,
        "held_out": plan.held_out, "model_versions": versions, "seconds": round(clock() - started, 2),
        "target": config.target, "session_ids": [s.session_id for s in plan.sessions],
    }


def wait_serving(channel: grpc.Channel, target: str, timeout_s: float) -> None:
    """Until the server's health service says the pipeline is loaded: before that it answers from
    popularity, which would score the fallback rather than the models."""
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + timeout_s
    problem = "no answer"
    while time.monotonic() < deadline:
        try:
            status = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2.0).status
            if status == health_pb2.HealthCheckResponse.SERVING:
                return
            problem = f"health {health_pb2.HealthCheckResponse.ServingStatus.Name(status)}"
        except grpc.RpcError as exc:
            problem = f"{exc.code().name}: {exc.details()}"  # type: ignore[attr-defined]
        time.sleep(0.5)
    raise InfraError(f"the server at {target} is not serving after {timeout_s:.0f}s ({problem}). "
                     "Start it with `streamrec serve` and wait for its models to load")


def _wait_applied(store: redis.Redis, prefix: str, session_id: str, n: int, timeout_s: float) -> None:
    """Until the worker has put the session's ``n``-th click into Redis."""
    key = session_keys(prefix, session_id)[0]
    deadline = time.monotonic() + timeout_s
    while int(store.zcard(key)) < n:  # type: ignore[arg-type]
        if time.monotonic() > deadline:
            raise InfraError(f"click {n} of session {session_id} did not reach Redis within {timeout_s:.0f}s; "
                             "is `streamrec worker` running on this topic and prefix?")
        time.sleep(0.002)
