"""``CallGuard`` on a real grpc.aio server with a concurrency limit, driven by a clock of the test's own:
calls that hold a place without progress are ended with a clear status, and their places serve others."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from streamrec.serve.call_guard import CallGuard, GuardConfig

PLACES = 4


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def echo(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return request


async def chat(requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    async for request in requests:
        yield request * (200_000 if request == b"big" else 1)


Test = Callable[[grpc.aio.Channel, CallGuard, Clock, list[str]], Awaitable[None]]


def run(test: Test, config: GuardConfig = GuardConfig(read_timeout_s=5.0, max_streams=2, stream_idle_s=60.0)) -> None:
    async def main() -> None:
        clock, ended = Clock(), []
        guard = CallGuard(config, clock=clock, on_end=ended.append)
        server = grpc.aio.server(interceptors=[guard], maximum_concurrent_rpcs=PLACES)
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Chat": grpc.stream_stream_rpc_method_handler(chat)}),))
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                await test(channel, guard, clock, ended)
        finally:
            await server.stop(None)
    asyncio.run(main())


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Wait for the server's side of the test (a call taken in, a stream admitted) on the one loop."""
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


async def echo_code(channel: grpc.aio.Channel) -> grpc.StatusCode:
    try:
        assert await channel.unary_unary("/t.T/Echo")(b"hi", timeout=10) == b"hi"
        return grpc.StatusCode.OK
    except grpc.aio.AioRpcError as exc:
        return exc.code()


def held_unary(channel: grpc.aio.Channel) -> Any:
    """A unary call whose request message never comes: opened as a stream that sends nothing."""
    return channel.stream_stream("/t.T/Echo")()


def test_a_unary_call_whose_request_never_comes_is_ended_and_its_place_serves_others() -> None:
    async def test(channel: grpc.aio.Channel, guard: CallGuard, clock: Clock, ended: list[str]) -> None:
        held = [held_unary(channel) for _ in range(PLACES)]
        await until(lambda: len(guard._reading) == PLACES)
        assert await echo_code(channel) == grpc.StatusCode.RESOURCE_EXHAUSTED  # every place is held
        clock.now += 4.9
        guard.sweep()
        assert ended == [] and await echo_code(channel) == grpc.StatusCode.RESOURCE_EXHAUSTED
        clock.now += 0.1
        guard.sweep()
        for call in held:
            assert await call.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert "did not come within 5 s" in await call.details()
        assert ended == ["read_timeout"] * PLACES
        assert await echo_code(channel) == grpc.StatusCode.OK
        assert not guard._reading and not guard._expired
    run(test)


def test_a_call_that_ends_without_its_request_gets_invalid_argument() -> None:
    async def test(channel: grpc.aio.Channel, guard: CallGuard, clock: Clock, ended: list[str]) -> None:
        call = held_unary(channel)
        await call.done_writing()
        assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "without its request message" in await call.details()
    run(test)


def test_streams_past_the_cap_are_refused_and_unary_calls_keep_their_places() -> None:
    async def test(channel: grpc.aio.Channel, guard: CallGuard, clock: Clock, ended: list[str]) -> None:
        streams = [channel.stream_stream("/t.T/Chat")() for _ in range(2)]
        for stream in streams:
            await stream.write(b"a")
            assert await stream.read() == b"a"
        extra = channel.stream_stream("/t.T/Chat")()
        assert await extra.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "STREAMREC_SERVE_MAX_STREAMS" in await extra.details()
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
        assert await watch.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # a stream written through its context
        assert await echo_code(channel) == grpc.StatusCode.OK  # 2 of 4 places are still theirs
        assert ended == ["too_many_streams"] * 2
        await streams[0].done_writing()
        assert await streams[0].code() == grpc.StatusCode.OK
        await until(lambda: guard.streams == 1)
        again = channel.stream_stream("/t.T/Chat")()
        await again.write(b"b")
        assert await again.read() == b"b"
    run(test)


def test_an_idle_stream_is_ended_and_a_moving_one_is_not() -> None:
    async def test(channel: grpc.aio.Channel, guard: CallGuard, clock: Clock, ended: list[str]) -> None:
        idle, moving = (channel.stream_stream("/t.T/Chat")() for _ in range(2))
        for stream in (idle, moving):
            await stream.write(b"x")
            assert await stream.read() == b"x"
        for _ in range(3):
            clock.now += 40.0
            await moving.write(b"y")
            assert await moving.read() == b"y"
            guard.sweep()
        assert await idle.code() == grpc.StatusCode.UNAVAILABLE
        assert "idle for 60 s" in await idle.details()
        assert ended == ["stream_idle"]
        await moving.write(b"z")
        assert await moving.read() == b"z"
        await until(lambda: guard.streams == 1)
    run(test)


def test_a_stream_waiting_on_a_client_that_does_not_read_is_left_to_the_connection_age() -> None:
    """Cancelling it would end its task but not its call (module docstring): the guard leaves it be."""
    async def test(channel: grpc.aio.Channel, guard: CallGuard, clock: Clock, ended: list[str]) -> None:
        stalled = channel.stream_stream("/t.T/Chat")()
        for _ in range(20):  # 4 MB of answers the client never reads: past any flow-control window
            await stalled.write(b"big")
        await until(lambda: guard.streams == 1 and all(w.writing for w in guard._streams))
        clock.now += 600.0  # in the same loop turn as the check: the stream is still writing
        guard.sweep()
        assert ended == []
        stalled.cancel()
        await until(lambda: guard.streams == 0)
    run(test)


@pytest.mark.parametrize("limits", [(0.01, 1e6), (100.0, 60.0), (2.0, 60.0)])
def test_the_sweep_runs_often_enough_for_the_shortest_limit(limits: tuple[float, float]) -> None:
    config = GuardConfig(read_timeout_s=limits[0], max_streams=1, stream_idle_s=limits[1])
    assert 0.05 <= config.sweep_every_s <= 1.0
    assert config.sweep_every_s <= max(min(config.read_timeout_s, config.stream_idle_s) / 4, 0.05)
