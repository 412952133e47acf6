"""A fault drill: restart the local Kafka broker, then the local Redis, while traffic flows.

A publisher sends clicks at a steady rate, a worker applies them, and a client asks a server for
one live session every ``probe_every_s``; meanwhile the broker and then Redis that ``streamrec
infra up`` started are stopped and started again (``streamrec.infra``: SIGTERM, then a fresh
process on the same data). Afterwards:

- ``lost``: events Kafka acknowledged that never reached Redis, from the worker's applied-events
  counter and, independently, from the session contents compared with ``expected_sessions``;
- ``duplicates``: events applied more than once (the counter above the published count, and
  session entries beyond the expected ones);
- per restart, ``recovery_s``: from the service answering again until the counter moves again;
  ``outage_s``: from the stop until then; ``catch_up_s``: from the service answering again until
  the backlog published before that is applied; for Redis also ``server_recovery_s``: until the
  server answers non-degraded again, and the degraded answers it gave meanwhile.

The restarts touch only the project's own local services, and both are running when it returns.
Run it alone: other work on the same infra sees the restarts too.
"""

from __future__ import annotations

import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import redis

from streamrec.data.replay import expected_sessions
from streamrec.errors import InfraError
from streamrec.events.schema import encode_event
from streamrec.infra.kafka_broker import KafkaBroker
from streamrec.infra.manager import infra_up
from streamrec.infra.redis_server import RedisServer
from streamrec.publish.producer import EventProducer, Pacer
from streamrec.settings import Settings
from streamrec.stream.launcher import WorkerProcess
from streamrec.stream.session_store import decode_member, pop_keys, session_keys
from streamrec.stream.topics import ensure_topics

__all__ = ["DrillConfig", "run_drill"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DrillConfig:
    rate: float = 300.0  # events/s, throughout
    sessions: int = 1000  # the events spread over them; keep rate x duration / sessions < session_max_len
    items: tuple[str, ...] = tuple(f"item-{i}" for i in range(200))
    warmup_s: float = 8.0  # steady traffic before the first restart
    settle_s: float = 8.0  # steady traffic after each recovery
    down_s: float = 2.0  # how long each service stays stopped
    probe_every_s: float = 0.05
    recover_timeout_s: float = 120.0


class _Sampler(threading.Thread):
    """Calls ``read`` every ``every_s`` and keeps (monotonic time, value); None when it failed."""

    def __init__(self, read: Callable[[], Any], every_s: float) -> None:
        super().__init__(daemon=True)
        self.read, self.every_s = read, every_s
        self.samples: list[tuple[float, Any]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                value = self.read()
            except Exception:  # noqa: BLE001  (a failed read during an outage is a sample too)
                value = None
            self.samples.append((time.monotonic(), value))
            self.stopping.wait(self.every_s)

    def stop(self) -> list[tuple[float, Any]]:
        self.stopping.set()
        self.join(30)
        return list(self.samples)


class _Publisher(threading.Thread):
    """Publishes clicks at a steady rate until stopped; keeps every event it sent."""

    def __init__(self, settings: Settings, config: DrillConfig, run: str) -> None:
        super().__init__(daemon=True)
        self.settings, self.config, self.run_id = settings, config, run
        self.events: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.failed = 0
        self.errors: list[str] = []

    def session(self, n: int) -> str:
        return f"drill-{self.run_id}-s{n}"

    def run(self) -> None:
        rng = random.Random(0)
        pacer = Pacer(self.config.rate)
        with EventProducer(self.settings) as producer:
            i = 0
            while not self.stopping.is_set():
                pacer.wait()
                sid = self.session(rng.randrange(self.config.sessions))
                event = {"event_id": f"drill-{self.run_id}-e{i}", "session_id": sid,
                         "item_id": rng.choice(self.config.items), "event_type": "click",
                         "timestamp": int(time.time() * 1000)}
                producer.send(encode_event(event), sid.encode())
                self.events.append(event)
                i += 1
            stats = producer.close()
        self.failed, self.errors = stats.failed, stats.errors[:5]


def _applied_reader(settings: Settings) -> tuple[redis.Redis, Callable[[], int]]:
    client = redis.Redis.from_url(settings.redis_address, socket_timeout=0.5, socket_connect_timeout=0.5)
    counter = pop_keys(settings.redis_prefix)[3]
    return client, lambda: int(client.get(counter) or 0)


def _wait(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except (redis.RedisError, OSError):
            pass
        time.sleep(0.05)
    return False


def _restart(stop: Callable[[], bool], start: Callable[[], object], down_s: float) -> dict[str, float]:
    t0 = time.monotonic()
    if not stop():
        raise InfraError("the service was not running under streamrec infra: nothing was restarted; "
                         "start it with streamrec infra up")
    t_down = time.monotonic()
    time.sleep(down_s)
    t_start = time.monotonic()
    start()
    return {"t0": t0, "t_down": t_down, "t_start": t_start, "t_up": time.monotonic()}


def _recovery(times: dict[str, float], counts: list[tuple[float, Any]], published_at_up: int) -> dict[str, Any]:
    """Figures of one restart from the applied-counter samples."""
    t0, t_up = times["t0"], times["t_up"]
    known = [(t, n) for t, n in counts if n is not None]
    before = [n for t, n in known if t <= t_up]
    base = before[-1] if before else 0
    resumed = next((t for t, n in known if t > t_up and n > base), None)
    caught_up = next((t for t, n in known if t > t_up and n >= published_at_up), None)
    return {
        "stop_s": round(times["t_down"] - t0, 2),
        "start_s": round(t_up - times["t_start"], 2),
        "unavailable_s": round(t_up - times["t_down"], 2),
        "recovery_s": round(resumed - t_up, 2) if resumed is not None else None,
        "outage_s": round(resumed - t0, 2) if resumed is not None else None,
        "catch_up_s": round(caught_up - t_up, 2) if caught_up is not None else None,
    }


def _probe(target: str, session_id: str, k: int) -> Callable[[], str]:
    from streamrec.serve.servicer import pb2, pb2_grpc

    stub = pb2_grpc.RecommenderStub(grpc.insecure_channel(target))

    def call() -> str:
        try:
            reply = stub.Recommend(pb2.RecommendRequest(session_id=session_id, k=k), timeout=1.0)
        except grpc.RpcError as exc:
            return f"error:{exc.code().name}"  # type: ignore[attr-defined]
        return "degraded" if reply.degraded else "ok"

    return call


def _answers(probes: list[tuple[float, Any]], start: float, end: float) -> dict[str, int]:
    return dict(Counter(v for t, v in probes if start <= t <= end))


def run_drill(settings: Settings, target: str, config: DrillConfig, logdir: Path) -> dict[str, Any]:
    """Run the drill on ``settings``' topic and prefix (give it ones of its own) with the server at
    ``target`` reading the same prefix; returns the figures. Both services run when it returns."""
    run = uuid.uuid4().hex[:8]
    broker, redis_server = KafkaBroker(settings), RedisServer(settings)
    ensure_topics(settings)
    client, applied = _applied_reader(settings)
    appendonly = client.config_get("appendonly").get("appendonly")
    worker = WorkerProcess(settings, logdir / f"drill-worker-{run}.log")
    publisher = _Publisher(settings, config, run)
    counts = _Sampler(applied, 0.05)
    probes = _Sampler(_probe(target, publisher.session(0), 10), config.probe_every_s)
    result: dict[str, Any] = {"rate": config.rate, "sessions": config.sessions, "redis_appendonly": appendonly}
    try:
        worker.start()
        for thread in (counts, probes, publisher):
            thread.start()
        time.sleep(config.warmup_s)

        phases: dict[str, dict[str, Any]] = {}
        for name, service in (("kafka", broker), ("redis", redis_server)):
            log.info("drill: restarting %s", name)
            times = _restart(service.stop, service.start, config.down_s)
            published_at_up = len(publisher.events)
            if not _wait(lambda n=published_at_up: applied() >= n, config.recover_timeout_s):  # type: ignore[misc]
                raise RuntimeError(f"the worker did not catch up within {config.recover_timeout_s:.0f}s after "
                                   f"the {name} restart; see {worker.logfile}")
            time.sleep(config.settle_s)
            phases[name] = {**times, "published_at_up": published_at_up}

        publisher.stopping.set()
        publisher.join(config.recover_timeout_s)
        published = len(publisher.events)
        _wait(lambda: applied() >= published, config.recover_timeout_s)
        time.sleep(1.0)  # a duplicate applied late would show up now
        count_samples, probe_samples = counts.stop(), probes.stop()
        final = applied()

        for name, times in phases.items():
            figures = _recovery(times, count_samples, times.pop("published_at_up"))
            window = _answers(probe_samples, times["t0"], times["t_up"] + (figures["recovery_s"] or 0) + 5)
            figures["answers_during"] = window
            if name == "redis":
                back = next((t for t, v in probe_samples if t > times["t_up"] and v == "ok"), None)
                figures["server_recovery_s"] = round(back - times["t_up"], 2) if back is not None else None
            result[name] = figures
        expected = expected_sessions(publisher.events, settings.session_max_len)
        stored = _stored_sessions(client, settings, list(expected))
        missing = sum((Counter(items) - Counter(stored.get(sid, []))).total() for sid, items in expected.items())
        extra = sum((Counter(stored.get(sid, [])) - Counter(items)).total() for sid, items in expected.items())
        result.update({
            "published": published,
            "publish_failed": publisher.failed,
            "applied": final,
            "lost": published - final,
            "lost_in_sessions": missing,
            "duplicates": max(0, final - published),
            "duplicates_in_sessions": extra,
            "sessions_exact": sum(stored.get(sid) == items for sid, items in expected.items()),
            "sessions_checked": len(expected),
            "probes": _answers(probe_samples, 0.0, float("inf")),
        })
    finally:
        publisher.stopping.set()
        counts.stopping.set()
        probes.stopping.set()
        worker.stop()
        infra_up(settings)  # whatever happened above, leave both services running
        client.close()
    return result


def _stored_sessions(client: redis.Redis, settings: Settings, session_ids: Sequence[str]) -> dict[str, list[str]]:
    pipe = client.pipeline(transaction=False)
    for sid in session_ids:
        pipe.zrange(session_keys(settings.redis_prefix, sid)[0], 0, -1)
    replies = pipe.execute()
    return {sid: [decode_member(m)[0] for m in members] for sid, members in zip(session_ids, replies, strict=True)}
