"""``streamrec health``: ask a server's gRPC health service for a status; exit 0 if SERVING, else 1.

For container health checks (Docker Compose) and exec probes. The server reports two services:
``""`` is SERVING as soon as it listens (liveness), ``streamrec.v1.Recommender`` once a pipeline
is loaded (readiness). Kubernetes can ask the same service with its native ``grpc:`` probes, except
over TLS, where this command (``--ca``, ``--cert``, ``--key``) is the way.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from streamrec.settings import Settings

if TYPE_CHECKING:  # the CLI builds this parser on every run: grpc is imported when the command runs
    import grpc

__all__ = ["READINESS_SERVICE", "add_parser", "check"]

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


def _health(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.serve.client import ClientTLS, open_channel

    # a server bound to every interface is reached on loopback from its own container
    host = "127.0.0.1" if settings.grpc_host in ("0.0.0.0", "::", "") else settings.grpc_host
    target = args.target or f"{host}:{settings.grpc_port}"
    tls = ClientTLS(*(Path(p) if p else None for p in (args.ca, args.cert, args.key)))
    with open_channel(target, tls) as channel:
        status = check(channel, args.service, args.timeout)
    if not args.quiet:
        print(f"{target} {args.service or '(server)'}: {status}")
    return 0 if status == "SERVING" else 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("health", help="check a running server's gRPC health service (exit 0 if SERVING)",
                       description="Call grpc.health.v1.Health/Check on the server and exit 0 when the status is "
                       "SERVING, 1 otherwise (NOT_SERVING, unreachable, deadline exceeded). The default service is "
                       f"{READINESS_SERVICE} (SERVING once a pipeline is loaded: readiness); --service '' asks "
                       "about the process itself (liveness). For container health checks and exec probes.")
    p.add_argument("--target", metavar="HOST:PORT",
                   help="server (default STREAMREC_GRPC_HOST:STREAMREC_GRPC_PORT, loopback when bound to 0.0.0.0)")
    p.add_argument("--service", default=READINESS_SERVICE, metavar="NAME",
                   help=f"health service name (default {READINESS_SERVICE}; '' for the server as a whole)")
    p.add_argument("--timeout", type=float, default=2.0, metavar="S", help="deadline in seconds (default 2)")
    p.add_argument("--ca", metavar="PEM", help="CA of the server's certificate (enables TLS)")
    p.add_argument("--cert", metavar="PEM", help="client certificate (mTLS)")
    p.add_argument("--key", metavar="PEM", help="client key (mTLS)")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing; the exit code says it")
    p.set_defaults(func=_health)
