"""The gRPC floor: the least a grpc.aio server costs per unary call on this machine.

A minimal server of the grpc_bench kind (``python_async_grpc``): ``grpc.aio.server()`` with its
defaults, one servicer that returns a prebuilt answer, no interceptor, no executor, no reflection, on
uvloop when it is installed. It serves ``grpc.health.v1.Health/Check``, the same message pair as the
server's own empty RPC, so the two are driven the same way and their CPU per call compares directly.

``python -m streamrec.bench.floor --port P`` serves on 127.0.0.1:P until SIGTERM; ``bench serve``
starts it on a free port and stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

__all__ = ["FloorServicer", "serve"]

_SERVING = health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


class FloorServicer(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
    async def Check(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        return _SERVING


async def serve(port: int, host: str = "127.0.0.1") -> None:
    server = grpc.aio.server()
    health_pb2_grpc.add_HealthServicer_to_server(FloorServicer(), server)
    server.add_insecure_port(f"{host}:{port}")
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    try:
        await stop.wait()
    finally:
        await server.stop(0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(port))
    else:
        uvloop.run(serve(port))


if __name__ == "__main__":
    main()
