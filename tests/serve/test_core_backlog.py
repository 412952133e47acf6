"""``CoreBacklog`` against a real grpc.aio server: calls that wait in gRPC core while the event loop is
held are counted, summed over the listeners of a process, and the count returns to 0 once they are taken
in; a call that ended in core is forgotten when the loop is idle."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from streamrec.infra.processes import wait_until
from streamrec.serve.core_backlog import CoreBacklog


class HeldHealth(health_pb2_grpc.HealthServicer):
    """Check answers at once, except for service "hold": that one holds the whole event loop (as a
    pipeline pass on the loop does) until ``release`` is set."""

    def __init__(self) -> None:
        self.holding = threading.Event()
        self.release = threading.Event()

    async def Check(self, request: Any, context: Any) -> Any:
        if request.service == "hold":
            self.holding.set()
            assert self.release.wait(30), "the test never released the loop"
        return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)


@pytest.mark.parametrize("listeners", [1, 2])
def test_calls_waiting_in_grpc_core_are_counted_until_taken_in(listeners: int) -> None:
    backlog = CoreBacklog(idle_every_s=0.0)
    servicer = HeldHealth()
    ready: dict[str, list[int]] = {}
    stop = threading.Event()

    async def serve() -> None:
        servers = [backlog.server() for _ in range(listeners)]  # one process's listeners, on one loop
        for server in servers:
            health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
        ports = [server.add_insecure_port("127.0.0.1:0") for server in servers]
        for server in servers:
            await server.start()
        ready["attached"] = [int(backlog.backlog() is not None)]
        ready["ports"] = ports
        while not stop.is_set():
            await asyncio.sleep(0.01)
        for server in servers:
            await server.stop(None)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    channels: list[grpc.Channel] = []
    try:
        assert wait_until(lambda: "ports" in ready, 20, 0.01)
        assert ready["attached"] == [1], "a server was not found among channelz's"
        channels = [grpc.insecure_channel(f"127.0.0.1:{port}") for port in ready["ports"]]
        stubs = [health_pb2_grpc.HealthStub(channel) for channel in channels]
        for i in range(5):
            stubs[i % listeners].Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert backlog.backlog() == 0 and backlog.taken == 5

        held = stubs[0].Check.future(health_pb2.HealthCheckRequest(service="hold"), timeout=30)
        assert servicer.holding.wait(10)
        waiting = [stubs[i % listeners].Check.future(health_pb2.HealthCheckRequest(), timeout=30) for i in range(8)]
        gone = stubs[-1].Check.future(health_pb2.HealthCheckRequest(), timeout=0.2)  # gives up while in core
        assert wait_until(lambda: backlog.backlog() == 9, 20, 0.01), backlog.backlog()
        assert wait_until(gone.done, 20, 0.01) and gone.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        servicer.release.set()
        assert held.result().status == health_pb2.HealthCheckResponse.SERVING
        assert all(call.result().status == health_pb2.HealthCheckResponse.SERVING for call in waiting)
        assert wait_until(lambda: backlog.taken >= 5 + 1 + 8, 20, 0.01)
        # the call that gave up is taken in only if core matched it before it ended: either way, once
        # the loop is idle, nothing counts as waiting
        backlog.note_idle()
        assert backlog.backlog() == 0
        stubs[-1].Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert backlog.backlog() == 0
    finally:
        for channel in channels:
            channel.close()
        servicer.release.set()
        stop.set()
        thread.join(10)


def test_before_its_server_exists_the_backlog_is_unknown() -> None:
    backlog = CoreBacklog()
    assert backlog.backlog() is None
    backlog.note_idle()  # nothing to read: no error


def test_calls_that_ended_in_core_are_forgotten_when_the_loop_is_idle_and_never_counted_below_zero() -> None:
    clock = [0.0]
    backlog = CoreBacklog(clock=lambda: clock[0], idle_every_s=1.0)
    started = [10]
    backlog._started = [lambda: started[0] - 4, lambda: 4]  # two listeners' channelz counts, as _attach reads them
    backlog.taken = 10
    assert backlog.backlog() == 0
    started[0] = 13  # three arrive; one of them gives up in core and is never taken in
    assert backlog.backlog() == 3
    backlog.taken = 12
    assert backlog.backlog() == 1  # the dead one still counts
    clock[0] = 5.0
    backlog.note_idle()
    assert backlog.backlog() == 0
    started[0] = 14
    backlog.note_idle()  # within idle_every_s of the last: channelz is not read again
    assert backlog.backlog() == 1
    backlog.taken = 14  # the "dead" one was taken in after all: the floor comes down
    assert backlog.backlog() == 0
    started[0] = 15
    assert backlog.backlog() == 1


def test_once_channelz_no_longer_knows_the_server_the_backlog_is_unknown() -> None:
    def gone() -> int:
        raise ValueError("Failed to get the server")  # what grpc's channelz_get_server raises

    backlog = CoreBacklog()
    backlog._started = [lambda: 0, gone]
    assert backlog.backlog() is None
    backlog.note_idle()
    assert backlog.backlog() is None
