"""``ModelWatcher``: swap in a new CURRENT version, refuse a bad one while the old one serves (and retry
it with backoff), and keep watching through surprises. A loader of this file's own stands in for ``RegistryLoader``
(the watcher needs its ``registry`` and ``load(version)``); the pointer is a real file."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from streamrec.errors import LoadError
from streamrec.registry import RANKER
from streamrec.serve.metrics import ServeMetrics
from streamrec.serve.state import ServingState, StateHolder
from streamrec.serve.watcher import ModelWatcher


def point(registry: Path, version: str | None) -> None:
    """Make ``version`` CURRENT (None: remove the pointer)."""
    pointer = registry / RANKER / "CURRENT"
    if version is None:
        pointer.unlink(missing_ok=True)
        return
    pointer.parent.mkdir(parents=True, exist_ok=True)
    tmp = pointer.with_name(".CURRENT.tmp")
    tmp.write_text(version + "\n")
    tmp.replace(pointer)


def state_of(version: str) -> ServingState:
    return ServingState(pipeline=None, vocab=("", "a", "b"), versions={RANKER: version},  # type: ignore[arg-type]
                        dataset="test", popular=np.array([1, 2], dtype=np.int64))


class Loader:
    """Loads any version except the ``bad`` ones (``LoadError``) and the ``surprising`` ones (RuntimeError, once)."""

    def __init__(self, registry: Path, bad: Collection[str] = (), surprising: Collection[str] = ()) -> None:
        self.registry = registry
        self.bad, self.surprising = set(bad), set(surprising)
        self.loaded: list[str] = []

    def load(self, version: str) -> ServingState:
        self.loaded.append(version)
        if version in self.surprising:
            self.surprising.discard(version)
            raise RuntimeError(f"surprise while loading {version}")
        if version in self.bad:
            raise LoadError(f"{RANKER} version {version} refused: sha256 mismatch")
        return state_of(version)


class Setup:
    def __init__(self, registry: Path, loader: Loader, state: ServingState | None = None, poll_s: float = 60.0) -> None:
        self.holder = StateHolder(state)
        self.metrics = ServeMetrics()
        self.changes: list[tuple[str | None, str | None]] = []
        self.loader = loader
        self.watcher = ModelWatcher(loader, self.holder, self.metrics, poll_s=poll_s,  # type: ignore[arg-type]
                                    on_change=self._changed)

    def _changed(self, state: ServingState | None, problem: str | None) -> None:
        self.changes.append((state.ranker_version if state else None, problem))

    def swaps(self, outcome: str) -> float:
        return self.metrics.registry.get_sample_value("streamrec_model_swaps_total", {"outcome": outcome}) or 0.0

    def version_gauge(self) -> dict[str, float]:
        return {s.labels["version"]: s.value for m in self.metrics.registry.collect()
                if m.name == "streamrec_model_version_info" for s in m.samples}


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_new_current_version_is_loaded_swapped_in_and_announced(tmp_path: Path) -> None:
    s = Setup(tmp_path, Loader(tmp_path), state_of("v1"))
    s.metrics.set_versions({RANKER: "v1"})
    point(tmp_path, "v1")
    assert run(s.watcher.check()) is False and s.loader.loaded == [], "the version in service is not reloaded"

    point(tmp_path, "v2")
    assert run(s.watcher.check()) is True
    assert s.holder.state is not None and s.holder.state.ranker_version == "v2"
    assert s.changes == [("v2", None)] and s.swaps("swapped") == 1.0
    assert s.version_gauge() == {"v2": 1.0}, "the old version's gauge is cleared"
    assert s.metrics.registry.get_sample_value("streamrec_model_loaded") == 1.0

    assert run(s.watcher.check()) is False and s.loader.loaded == ["v2"]


def test_a_bad_version_is_refused_once_and_the_old_one_keeps_serving(tmp_path: Path) -> None:
    s = Setup(tmp_path, Loader(tmp_path, bad={"v2"}), state_of("v1"))
    old = s.holder.state
    point(tmp_path, "v2")
    assert run(s.watcher.check()) is False
    assert s.holder.state is old
    assert "sha256 mismatch" in s.watcher.refused["v2"]
    assert s.changes == [("v1", s.watcher.refused["v2"])] and s.swaps("refused") == 1.0

    assert run(s.watcher.check()) is False
    assert s.loader.loaded == ["v2"], "a refused version is not retried before its backoff"
    assert s.swaps("refused") == 1.0 and len(s.changes) == 1

    point(tmp_path, "v3")
    assert run(s.watcher.check()) is True and s.holder.state.ranker_version == "v3"  # type: ignore[union-attr]


def test_no_pointer_is_refused_only_while_nothing_serves(tmp_path: Path) -> None:
    empty = Setup(tmp_path, Loader(tmp_path))
    assert run(empty.watcher.check()) is False and run(empty.watcher.check()) is False
    assert list(empty.watcher.refused) == ["none"] and empty.swaps("refused") == 1.0
    why = empty.watcher.refused["none"]
    assert empty.changes == [(None, why)] and str(tmp_path) in why

    serving = Setup(tmp_path, Loader(tmp_path), state_of("v1"))
    assert run(serving.watcher.check()) is False
    assert serving.watcher.refused == {} and serving.changes == []
    assert serving.holder.state is not None and serving.holder.state.ranker_version == "v1"


def test_notify_checks_at_once_and_a_surprise_does_not_stop_the_watcher(tmp_path: Path,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    s = Setup(tmp_path, Loader(tmp_path, surprising={"v2"}), state_of("v1"))

    async def until(version: str, timeout_s: float = 10.0) -> None:
        async with asyncio.timeout(timeout_s):
            while s.holder.state.ranker_version != version:  # type: ignore[union-attr]
                await asyncio.sleep(0.01)

    async def scenario() -> None:
        point(tmp_path, "v1")
        s.watcher.start()
        s.watcher.start()  # idempotent: still one task
        try:
            point(tmp_path, "v2")
            s.watcher.notify()  # the first load raises; the next check (the next notice) loads it
            async with asyncio.timeout(10):
                while not s.loader.loaded:
                    await asyncio.sleep(0.01)
            s.watcher.notify()
            await until("v2")  # long before the 60 s poll
        finally:
            await s.watcher.stop()
            await s.watcher.stop()

    run(scenario())
    assert s.loader.loaded == ["v2", "v2"] and s.watcher.refused == {}
    assert any("registry check failed" in r.getMessage() for r in caplog.records)


def test_the_poll_finds_a_version_without_a_notice(tmp_path: Path) -> None:
    s = Setup(tmp_path, Loader(tmp_path), poll_s=0.05)

    async def scenario() -> None:
        s.watcher.start()
        try:
            await asyncio.sleep(0.2)
            assert s.holder.state is None
            point(tmp_path, "v1")
            async with asyncio.timeout(10):
                while s.holder.state is None:
                    await asyncio.sleep(0.01)
        finally:
            await s.watcher.stop()

    run(scenario())
    assert s.holder.state is not None and s.holder.state.ranker_version == "v1"
    assert list(s.watcher.refused) == ["none"], "no pointer at the start: refused once, then found by the poll"



def test_stop_ends_the_watcher_even_when_a_notice_arrives_at_the_same_moment(tmp_path: Path) -> None:
    """Python 3.11's ``asyncio.wait_for`` returns the result, and drops the cancellation, when the
    awaited call completes at the moment it is cancelled: a watcher waiting for notices that way
    outlived its ``stop()``, and a server stopping as a publish notice came in never finished."""
    s = Setup(tmp_path, Loader(tmp_path), state_of("v1"))
    point(tmp_path, "v1")

    async def scenario() -> bool:
        s.watcher.start()
        await asyncio.sleep(0.05)  # the watcher has checked and waits for a notice or the next poll
        s.watcher.notify()
        stopping = asyncio.ensure_future(s.watcher.stop())
        done, _ = await asyncio.wait([stopping], timeout=5)  # not asyncio.timeout: its cancel would end it
        return bool(done)

    assert run(scenario()), "stop() did not end the watcher"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_refused_version_is_retried_with_doubling_backoff_and_counted_per_attempt(tmp_path: Path) -> None:
    s = Setup(tmp_path, Loader(tmp_path, bad={"v2"}), state_of("v1"), poll_s=10.0)
    clock = Clock()
    s.watcher.clock = clock
    point(tmp_path, "v2")
    due = 0.0
    for attempt, wait in enumerate([10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0], start=1):
        clock.now = due
        assert run(s.watcher.check()) is False
        assert len(s.loader.loaded) == attempt and s.swaps("refused") == attempt and len(s.changes) == attempt
        clock.now = due + wait - 0.001
        assert run(s.watcher.check()) is False and len(s.loader.loaded) == attempt, "not before the backoff"
        due += wait
    s.loader.bad.clear()  # the version became loadable
    clock.now = due
    assert run(s.watcher.check()) is True and s.holder.state.ranker_version == "v2"  # type: ignore[union-attr]
    assert "v2" not in s.watcher.refused


def test_a_version_incomplete_when_first_seen_is_loaded_once_complete_without_a_notice(tmp_path: Path) -> None:
    s = Setup(tmp_path, Loader(tmp_path, bad={"v2"}), state_of("v1"), poll_s=0.05)

    async def scenario() -> None:
        point(tmp_path, "v2")  # named before its files are complete: refused
        s.watcher.start()
        try:
            async with asyncio.timeout(10):
                while not s.watcher.refused:
                    await asyncio.sleep(0.01)
            s.loader.bad.clear()  # complete now; no notice is sent
            async with asyncio.timeout(10):
                while s.holder.state.ranker_version != "v2":  # type: ignore[union-attr]
                    await asyncio.sleep(0.01)
        finally:
            await s.watcher.stop()

    run(scenario())
    assert s.loader.loaded[-1] == "v2" and len(s.loader.loaded) >= 2 and s.swaps("swapped") == 1.0
