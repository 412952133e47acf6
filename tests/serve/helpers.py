"""Helpers of the serving tests (fixtures are in ``tests/conftest.py`` and ``tests/serve/conftest.py``):
sessions written into Redis the way the worker writes them, registry versions published again,
servers run on an event loop of their own, called through real gRPC channels, and a thread kept busy."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import grpc

from streamrec.events.schema import encode_event
from streamrec.registry import RANKER
from streamrec.settings import Settings
from streamrec.stream.processor import Record, SessionWriter


def spin(seconds: float) -> None:
    """Keep this thread computing for ``seconds`` (on an event loop: a batch holding the loop)."""
    until = time.perf_counter() + seconds
    while time.perf_counter() < until:
        pass


def settings_for(isolated: Settings, registry: Path, **changes: Any) -> Settings:
    """A server's settings on ``registry``: a free metrics port, and a watcher that polls twice a second."""
    return isolated.replace(registry=registry, metrics_port=0, registry_poll_s=0.5, **changes)


def ids(response: Any) -> list[str]:
    return [i.item_id for i in response.items]


def write_session(settings: Settings, session_id: str, item_ids: Sequence[str], *, event_type: str = "click",
                  start_ms: int | None = None, offset: int = 0) -> None:
    """Write a session into Redis exactly as the worker does (``SessionWriter``), minus Kafka. Each
    session comes from a partition of its own, so that ``offset`` counts within the session."""
    start = int(time.time() * 1000) - 60_000 if start_ms is None else start_ms
    records = [Record(f"{settings.clicks_topic}.{session_id}", 0, offset + i, session_id.encode(), encode_event({
        "event_id": f"{session_id}-{offset + i}", "session_id": session_id, "item_id": item,
        "event_type": event_type, "timestamp": start + 1000 * i})) for i, item in enumerate(item_ids)]

    async def write() -> None:
        async with SessionWriter(settings) as writer:
            result = await writer.apply(records)
            assert not result.dead, result.dead

    asyncio.run(write())


def publish_copy(registry: Path, new_version: str, *, corrupt: bool = False, source: str | None = None) -> Path:
    """Publish version ``source`` (default CURRENT) of the ranker again as ``new_version`` (optionally with a
    corrupted model.onnx), the way ``streamrec.export.publish`` does: a complete version dir, then CURRENT."""
    model_dir = registry / RANKER
    current = source or (model_dir / "CURRENT").read_text().strip()
    target = Path(shutil.copytree(model_dir / current, model_dir / new_version))
    manifest = json.loads((target / "manifest.json").read_text())
    manifest["version"] = new_version
    (target / "manifest.json").write_text(json.dumps(manifest))
    if corrupt:
        data = bytearray((target / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (target / "model.onnx").write_bytes(bytes(data))
    tmp = model_dir / ".CURRENT.tmp"
    tmp.write_text(new_version + "\n")
    tmp.replace(model_dir / "CURRENT")
    return target


class ServerThread:
    """A ``RecommendServer`` on an event loop in a background thread."""

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        from streamrec.serve.server import RecommendServer

        self.server = RecommendServer(settings, port=0, **kwargs)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-server", daemon=True)

    def call(self, coro: Any, timeout_s: float = 120.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout_s)

    def start(self, wait_loaded_s: float | None = 120.0) -> ServerThread:
        self.thread.start()
        self.call(self.server.start())
        if wait_loaded_s:
            self.call(self.server.wait_loaded(wait_loaded_s), wait_loaded_s + 5)
        return self

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.server.bound_port}"

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.target)

    def stop(self) -> None:
        try:
            self.call(self.server.stop(1.0))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
