"""Fixtures of the serving tests: a small real registry (ml-100k, non-neural sources) and servers
running in a thread of their own, with their own event loop, called through real gRPC channels."""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import grpc
import pytest

from streamrec.settings import Settings

RANKER = "deepfm"


@pytest.fixture(scope="session")
def trained_registry(tmp_path_factory: pytest.TempPathFactory, base_settings: Settings) -> Path:
    """A registry with one ranker version trained on ml-100k (about a minute on 2 busy cores)."""
    from streamrec.offline.assemble import PipelineSpec
    from streamrec.offline.ranker_job import RankerJob, run_ranker_job
    from streamrec.offline.ranker_fit import RankerConfig

    root = tmp_path_factory.mktemp("registry")
    spec = PipelineSpec(sources=("itemknn", "mf", "pop", "content"), registry=root, ranker=RankerConfig(epochs=3))
    run_ranker_job(RankerJob(dataset="ml-100k", data_dir=base_settings.data_dir, spec=spec, ablation=False),
                   progress=False)
    return root


@pytest.fixture
def registry(trained_registry: Path, tmp_path: Path) -> Path:
    """A copy of the trained registry that a test may change."""
    return Path(shutil.copytree(trained_registry, tmp_path / "registry"))


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


@pytest.fixture
def server_factory() -> Iterator[Any]:
    started: list[ServerThread] = []

    def make(settings: Settings, wait_loaded_s: float | None = 120.0, **kwargs: Any) -> ServerThread:
        s = ServerThread(settings, **kwargs)
        started.append(s)
        return s.start(wait_loaded_s)

    yield make
    for s in started:
        s.stop()
