"""``streamrec health``: ask a server's gRPC health service for a status; exit 0 if SERVING, else 1.

For container health checks (Docker Compose) and exec probes. The server reports two services:
``""`` is SERVING as soon as it listens (liveness), ``streamrec.v1.Recommender`` once a pipeline
is loaded (readiness). Kubernetes can ask the same service with its native ``grpc:`` probes, except
over TLS, where this command (``--ca``, ``--cert``, ``--key``) is the way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module for its parser on every run: grpc only when a check runs
    import grpc

__all__ = ["READINESS_SERVICE", "check", "healthy"]

READINESS_SERVICE = "streamrec.v1.Recommender"  # the server's SERVICE_NAME, without importing the server


def check(channel: grpc.Channel, service: str, timeout_s: float) -> str:
    """The status name (``SERVING``, ``NOT_SERVING``, ...) or, when the call fails, its gRPC code."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    stub = health_pb2_grpc.HealthStub(channel)
    try:
        response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout_s)
    except grpc.RpcError as exc:
        return str(exc.code().name)  # type: ignore[attr-defined]
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def healthy(service: str, status: str) -> bool:
    """Whether ``status`` (``check``'s answer) passes the probe. For the liveness service (``""``) a server
    refusing calls past its concurrency bound (RESOURCE_EXHAUSTED) is alive: restarting it would only
    lose capacity under the very load that made it refuse."""
    return status == "SERVING" or (service == "" and status == "RESOURCE_EXHAUSTED")
