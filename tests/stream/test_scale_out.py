"""Scale-out on one machine: three worker processes and two gRPC servers on one 6-partition topic
and one Redis. A worker is SIGKILLed mid-stream; the other two take over its partitions, and every
session still ends exactly as the worker's rules say (no loss, no duplicate, no mixing); both
servers answer a session with the same items and scores."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from streamrec.data.replay import expected_sessions
from streamrec.serve.servicer import pb2, pb2_grpc
from streamrec.settings import Settings
from streamrec.stream.inspect import group_assignment
from streamrec.stream.launcher import WorkerProcess
from streamrec.stream.topics import ensure_topics
from tests.stream.helpers import applied, make_events, publish, read_sessions, wait_applied

pytestmark = pytest.mark.integration

EVENTS, SESSIONS, RATE = 24_000, 1500, 1500.0  # about 16 s of publishing
MAX_LEN = 12  # below the ~16 events of an average session, so truncation is exercised


def catalogue_events() -> list[dict[str, Any]]:
    """Out-of-order events over many sessions, on items the served ml-100k models know."""
    events = make_events(EVENTS, sessions=SESSIONS, seed=11, out_of_order_every=7)
    for e in events:
        e["item_id"] = str(1 + int(e["item_id"].removeprefix("item-")))  # item-N -> ml-100k id N + 1
    return events


def wait_group(settings: Settings, members: int, timeout_s: float) -> list[list[int]]:
    """Wait until the worker group is stable with ``members`` members owning all partitions."""
    deadline = time.monotonic() + timeout_s
    state, owned = "", []
    while time.monotonic() < deadline:
        state, owned = group_assignment(settings)
        if (state == "Stable" and len(owned) == members and all(owned)
                and sorted(p for ps in owned for p in ps) == list(range(settings.topic_partitions))):
            return owned
        time.sleep(0.25)
    raise AssertionError(f"group not stable with {members} members after {timeout_s:.0f}s: {state} {owned}")


def test_three_workers_lose_one_and_two_servers_agree(isolated: Settings, tmp_path: Path,
                                                      trained_registry: Path,
                                                      server_factory: Any) -> None:
    settings = isolated.replace(session_max_len=MAX_LEN)
    events = catalogue_events()
    expected = expected_sessions(events, MAX_LEN)
    assert len(expected) == SESSIONS and any(len(v) == MAX_LEN for v in expected.values())

    served = settings.replace(registry=trained_registry, metrics_port=0, registry_poll_s=0.5)
    now = time.time() + 60  # one "now" for both servers: the session features depend on it
    servers = [server_factory(served, clock=lambda: now) for _ in range(2)]  # up (and loaded) before the stream
    ensure_topics(settings)
    workers = [WorkerProcess(settings, tmp_path / f"worker-{i}.log").start(wait_ready_s=0) for i in range(3)]
    try:
        for worker in workers:
            worker.wait_ready(90)
        assert [len(p) for p in wait_group(settings, 3, 60)] == [2, 2, 2]

        publisher = threading.Thread(target=publish, args=(settings, events), kwargs={"rate": RATE})
        publisher.start()
        deadline = time.monotonic() + 60
        while applied(settings) < EVENTS // 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        at_kill = applied(settings)
        workers[0].kill()
        survivors = wait_group(settings, 2, 60)  # the session timeout (10 s) notices the dead one
        publisher.join(timeout=120)
        assert not publisher.is_alive()
        assert wait_applied(settings, EVENTS, timeout_s=120) == EVENTS  # every event once, none twice
        assert all(w.proc is not None and w.proc.poll() is None for w in workers[1:])
    finally:
        for worker in workers:
            worker.stop()
    assert 0 < at_kill < EVENTS, "the worker was not killed mid-stream"
    assert [len(p) for p in survivors] == [3, 3]
    assert read_sessions(settings, expected) == expected

    probes = list(expected)[::50]
    answers = []
    for server in servers:
        with server.channel() as channel:
            stub = pb2_grpc.RecommenderStub(channel)
            answers.append([stub.Recommend(pb2.RecommendRequest(session_id=sid, k=10), timeout=10) for sid in probes])
    for a, b in zip(*answers, strict=True):
        assert not a.degraded and a.items
        assert [(i.item_id, i.score, list(i.sources)) for i in a.items] == \
               [(i.item_id, i.score, list(i.sources)) for i in b.items]
        assert dict(a.model_versions) == dict(b.model_versions)
