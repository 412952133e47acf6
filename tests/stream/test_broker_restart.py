"""A Kafka broker restart mid-stream: processing resumes and nothing is lost.

It restarts the shared test broker, so it lives in a module of its own."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from streamrec.data.replay import expected_sessions
from streamrec.infra.kafka_broker import KafkaBroker
from streamrec.settings import Settings
from streamrec.stream.launcher import WorkerProcess
from tests.stream.helpers import applied, make_events, publish, read_sessions, wait_applied

pytestmark = pytest.mark.integration


def test_broker_restart_mid_stream(isolated: Settings, tmp_path: Path) -> None:
    events = make_events(5000, sessions=100, seed=8)
    broker = KafkaBroker(isolated)
    assert broker.process.pid() is not None, "this test restarts the broker that `streamrec infra up` started"
    with WorkerProcess(isolated, tmp_path / "worker.log") as worker:
        publisher = threading.Thread(target=publish, args=(isolated, events), kwargs={"rate": 1000.0})
        publisher.start()
        deadline = time.monotonic() + 30
        while applied(isolated) < 1000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert broker.stop(), "the broker was not stopped"
        at_stop = applied(isolated)
        time.sleep(2.0)
        broker.start()
        publisher.join(timeout=180)
        assert not publisher.is_alive()
        assert wait_applied(isolated, len(events), timeout_s=180) == len(events)
        assert worker.proc is not None and worker.proc.poll() is None
    assert 0 < at_stop < len(events), "the broker did not go down mid-stream"
    expected = expected_sessions(events, isolated.session_max_len)
    assert read_sessions(isolated, expected) == expected
