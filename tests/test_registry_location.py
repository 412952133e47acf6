"""One registry location for every command: ``streamrec train`` and ``train-ranker`` publish where
``streamrec serve`` looks, ``Settings.registry`` (``STREAMREC_REGISTRY``), whatever the working directory.

They once disagreed: training published under the installed package, the server read ``./models``,
so in the container image (``STREAMREC_REGISTRY=/models``) the server never saw a trained model.
Each command runs here as the user runs it, a process of its own, from a directory that is not the checkout.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamrec import registry as reg
from streamrec.serve.servicer import pb2, pb2_grpc
from streamrec.settings import Settings

pytestmark = pytest.mark.integration

CHECKOUT = Path(__file__).resolve().parents[1]
SERVICE = "streamrec.v1.Recommender"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(args: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
    with open(log, "ab") as out:
        done = subprocess.run([sys.executable, "-m", "streamrec", *args], cwd=cwd, env=env, stdout=out,
                              stderr=subprocess.STDOUT, timeout=240)
    assert done.returncode == 0, log.read_text()[-3000:]


def wait_serving(target: str, server: subprocess.Popen[bytes], log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    with grpc.insecure_channel(target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            assert server.poll() is None, f"the server exited with {server.returncode}:\n{log.read_text()[-3000:]}"
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass  # not listening yet
            assert time.monotonic() < deadline, f"not SERVING after {timeout_s}s:\n{log.read_text()[-3000:]}"
            time.sleep(0.5)


def test_train_then_serve_from_another_directory_uses_streamrec_registry(isolated: Settings, base_settings: Settings,
                                                                         tmp_path: Path) -> None:
    work, registry = tmp_path / "work", tmp_path / "reg"
    work.mkdir()
    checkout_models = sorted((CHECKOUT / "models").iterdir()) if (CHECKOUT / "models").is_dir() else []
    port = free_port()
    env = {**os.environ, **isolated.to_env(), "STREAMREC_REGISTRY": str(registry),
           "STREAMREC_DATA_DIR": str(base_settings.data_dir.resolve()), "STREAMREC_HOME": str(tmp_path / "home"),
           "STREAMREC_GRPC_PORT": str(port), "STREAMREC_METRICS_PORT": "0", "OMP_NUM_THREADS": "1",
           "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "commands.log"

    run(["train", "--models", "sasrec", "--dataset", "ml-100k", "--epochs", "1", "--max-len", "20", "--device", "cpu",
         "-q"], work, env, log)
    run(["train-ranker", "--dataset", "ml-100k", "--sources", "sasrec,pop", "--no-ablation", "--epochs", "1", "-q"],
        work, env, log)
    sasrec, ranker = reg.read_pointer(registry, "sasrec"), reg.read_pointer(registry, reg.RANKER)
    assert sasrec and ranker, log.read_text()[-3000:]
    assert [h["why"] for h in reg.read_history(registry, reg.RANKER)] == ["published"]
    assert not (work / "models").exists()
    assert (sorted((CHECKOUT / "models").iterdir()) if (CHECKOUT / "models").is_dir() else []) == checkout_models

    with open(tmp_path / "serve.log", "ab") as out:
        server = subprocess.Popen([sys.executable, "-m", "streamrec", "serve"], cwd=work, env=env, stdout=out,
                                  stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        target = f"127.0.0.1:{port}"
        wait_serving(target, server, tmp_path / "serve.log")
        with grpc.insecure_channel(target) as channel:
            answer = pb2_grpc.RecommenderStub(channel).Recommend(pb2.RecommendRequest(session_id="s-1", k=10),
                                                                  timeout=10)
        # every member of the release, by version: the ranker, sasrec and the popularity arrays
        pop = reg.read_pointer(registry, "pop")
        assert dict(answer.model_versions) == {reg.RANKER: ranker, "sasrec": sasrec, "pop": pop}
        assert len(answer.items) == 10 and not answer.degraded
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(10)
