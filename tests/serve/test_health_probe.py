"""``streamrec health`` against a real gRPC health service: exit 0 only for SERVING."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from streamrec.cli import main
from streamrec.serve.health_probe import READINESS_SERVICE, healthy
from streamrec.serve.server import SERVICE_NAME


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    """A gRPC server with only the health service, as ``streamrec serve`` reports it before a model loads."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    servicer.set(READINESS_SERVICE, health_pb2.HealthCheckResponse.NOT_SERVING)
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(None)


def test_readiness_is_the_servers_service_name() -> None:
    assert READINESS_SERVICE == SERVICE_NAME


def test_exit_code_follows_the_status(health_server: tuple[str, health.HealthServicer],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    target, servicer = health_server
    assert main(["health", "--target", target]) == 1  # not ready: no pipeline yet
    assert "NOT_SERVING" in capsys.readouterr().out
    assert main(["health", "--target", target, "--service", ""]) == 0  # but alive
    assert "(server): SERVING" in capsys.readouterr().out
    servicer.set(READINESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
    assert main(["health", "--target", target, "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["health", "--target", target, "--service", "no.such.Service"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().out


def test_an_unreachable_server_is_unhealthy(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["health", "--target", f"127.0.0.1:{port}", "--timeout", "0.5"]) == 1
    assert capsys.readouterr().out.split()[-1] in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


def test_a_server_refusing_calls_at_its_bound_is_alive_but_not_ready() -> None:
    assert healthy("", "RESOURCE_EXHAUSTED")
    assert not healthy(READINESS_SERVICE, "RESOURCE_EXHAUSTED")
    assert not healthy("", "UNAVAILABLE") and not healthy("", "NOT_SERVING")
