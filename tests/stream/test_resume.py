"""Resuming from the offsets Redis holds: what a Redis crash loses is read again from Kafka.

The crash is emulated by putting back a copy of Redis's keys taken earlier, as a Redis that restarts
from an append-only file missing its last writes would be, while Kafka keeps the offsets the worker
committed after those writes.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import redis
from faust.types import TP

from streamrec.data.replay import expected_sessions
from streamrec.settings import Settings
from streamrec.stream.inspect import wait_for_lag
from streamrec.stream.launcher import WorkerProcess
from streamrec.stream.resume import resume_positions
from streamrec.stream.session_store import offsets_key, pop_keys
from tests.stream.helpers import applied, make_events, publish, read_sessions, wait_applied

A, B, C = TP("t", 0), TP("t", 1), TP("t", 2)


def test_resume_positions_go_back_to_redis_never_forward_past_a_commit() -> None:
    committed = {A: 100, B: 50, C: None}
    applied_offsets = {A: 79, B: 60, C: 9}
    # A: Redis lost 80..99, re-read them; B: Redis is ahead of the commit, Faust's position stands;
    # C: nothing committed (a new group), start after what Redis applied
    assert resume_positions(committed, applied_offsets) == {A: 80, C: 10}
    assert resume_positions({A: 80}, {A: 79}) == {}  # the commit is right after Redis's offset
    assert resume_positions({A: 100}, {}) == {}  # Redis knows nothing of A: Kafka's commit it is


def snapshot(settings: Settings) -> dict[bytes, bytes]:
    with redis.Redis.from_url(settings.redis_address) as client:
        return {k: client.dump(k) for k in client.scan_iter(match=f"{settings.redis_prefix}*", count=5000)}


def restore(settings: Settings, keys: dict[bytes, bytes]) -> None:
    """Redis as it was at ``snapshot``: what it holds after a crash that lost the writes since."""
    with redis.Redis.from_url(settings.redis_address) as client:
        current = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=5000))
        if current:
            client.delete(*current)
        for key, value in keys.items():
            client.restore(key, 0, value)


def counts(settings: Settings) -> dict[str, int]:
    with redis.Redis.from_url(settings.redis_address, decode_responses=True) as client:
        return {item: int(n) for item, n in client.zrange(pop_keys(settings.redis_prefix)[2], 0, -1, withscores=True)}


def check_exact(settings: Settings, events: list[dict[str, Any]]) -> None:
    expected = expected_sessions(events, settings.session_max_len)
    assert read_sessions(settings, expected) == expected
    assert counts(settings) == dict(Counter(str(e["item_id"]) for e in events))


@pytest.mark.integration
def test_a_restarted_worker_reapplies_what_redis_lost(isolated: Settings, tmp_path: Path) -> None:
    settings = isolated.replace(session_max_len=50)
    first, second = make_events(600, sessions=40, seed=11), make_events(600, sessions=40, seed=12)
    with WorkerProcess(settings, tmp_path / "worker.log"):
        publish(settings, first)
        assert wait_applied(settings, len(first)) == len(first)
        before_crash = snapshot(settings)
        publish(settings, second)
        assert wait_applied(settings, len(first) + len(second)) == len(first) + len(second)
        assert wait_for_lag(settings, 60) == 0  # Kafka holds the second wave as done
    restore(settings, before_crash)
    assert applied(settings) == len(first)
    with WorkerProcess(settings, tmp_path / "worker.log") as proc:
        assert wait_applied(settings, len(first) + len(second)) == len(first) + len(second)
        assert "after the last one Redis holds as applied" in proc.log_text()
    check_exact(settings, first + second)


@pytest.mark.integration
def test_a_running_worker_stops_when_redis_lost_its_writes_and_its_restart_repairs(
        isolated: Settings, tmp_path: Path) -> None:
    """Commits every 30 s leave the first two waves acked but uncommitted when the third finds Redis
    rolled back: the case where the worker used to hang on its way out (``agents.commit_acked``)."""
    settings = isolated.replace(session_max_len=50, commit_interval_s=30.0)
    waves = [make_events(300, sessions=20, seed=seed) for seed in (21, 22, 23)]
    proc = WorkerProcess(settings, tmp_path / "worker.log").start()
    try:
        publish(settings, waves[0])
        assert wait_applied(settings, 300) == 300
        before_crash = snapshot(settings)
        publish(settings, waves[1])
        assert wait_applied(settings, 600) == 600
        restore(settings, before_crash)
        publish(settings, waves[2])
        assert proc.proc is not None
        try:
            code = proc.proc.wait(90)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the worker did not stop on a Redis that lost its writes:\n{proc.log_text()[-3000:]}")
        assert code == 1, code  # the documented exit status
        assert "Redis lost acknowledged writes" in proc.log_text()
    finally:
        proc.kill()
    with redis.Redis.from_url(settings.redis_address) as client:
        assert client.hlen(offsets_key(settings.redis_prefix)) > 0
    with WorkerProcess(settings, tmp_path / "worker.log"):
        assert wait_applied(settings, 900) == 900
    check_exact(settings, waves[0] + waves[1] + waves[2])
