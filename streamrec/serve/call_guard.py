"""Ends calls that hold one of grpc.aio's places without making progress, so they cannot lock out the rest.

grpc.aio's concurrency limit (``STREAMREC_SERVE_MAX_IN_FLIGHT``) counts a call from the moment it is
taken in until it ends, streams included, and nothing in grpc ends a call from the server's side:

- a unary call whose request message never comes waits for it in grpc.aio for as long as its client
  keeps the call open (with no deadline, forever);
- a stream stays open for as long as its client keeps it.

With 100 such calls held against a two-process server, all 20 of 20 plain ``Recommend`` calls were refused with
``RESOURCE_EXHAUSTED``; with none held, all 20 were answered (docs/serving-log.md). The guard is an interceptor:

- it reads a unary call's request itself (grpc is told that the method takes a stream of requests,
  which is the same on the wire), and ends the call with ``DEADLINE_EXCEEDED`` if the message has not come
  within ``read_timeout_s``;
- it refuses streams past ``max_streams`` a process with ``RESOURCE_EXHAUSTED``, so streams never hold
  more than that many places;
- it ends with ``UNAVAILABLE`` a stream (served by an async generator) that has neither read a request
  nor written an answer for ``stream_idle_s``.

Cancelling a call's task ends the task but not the call: gRPC core holds the call, and its place, until
a status is sent. So ``sweep`` cancels a task only while it waits in the guard's own code (for a request, or
for the handler's next answer), and the guard sends the status when the cancellation reaches it. A stream
blocked writing to a client that does not read is out of Python's reach: the connection's maximum age
(``STREAMREC_SERVE_MAX_CONNECTION_AGE_S``) ends it, with the connection.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc

__all__ = ["CallGuard", "GuardConfig"]

Behavior = Callable[..., Any]


@dataclass(frozen=True)
class GuardConfig:
    """The server builds it from ``STREAMREC_SERVE_READ_TIMEOUT_S``, ``_MAX_STREAMS`` and ``_STREAM_IDLE_S``."""

    read_timeout_s: float  # a unary call's request message must come within this
    max_streams: int  # streaming calls in progress at once, per process
    stream_idle_s: float  # a stream with no request read nor answer written for this long is ended

    @property
    def sweep_every_s(self) -> float:
        """A call is ended within this much of its limit."""
        return min(max(min(self.read_timeout_s, self.stream_idle_s) / 4, 0.05), 1.0)


class _Watch:
    """One stream in progress: its task, when it last moved, whether it waits on a write."""

    __slots__ = ("task", "last", "idle_s", "writing", "expired")

    def __init__(self, task: asyncio.Task[Any], now: float, idle_s: float | None) -> None:
        self.task = task
        self.last = now
        self.idle_s = idle_s  # None: not watched for idleness (a handler that writes through its context)
        self.writing = False
        self.expired = False


class CallGuard(grpc.aio.ServerInterceptor):
    """An interceptor, or, through ``guarded``, part of one a server has already; one per process, for all
    its listeners. ``run()`` sweeps until cancelled. ``on_end(reason)`` is told of each call it ends or
    refuses: ``read_timeout``, ``stream_idle`` or ``too_many_streams``."""

    def __init__(self, config: GuardConfig, clock: Callable[[], float] = time.monotonic,
                 on_end: Callable[[str], None] = lambda reason: None) -> None:
        self.config = config
        self.clock = clock
        self.on_end = on_end
        self._reading: dict[asyncio.Task[Any], float] = {}  # unary calls waiting for their request: when they expire
        self._expired: set[asyncio.Task[Any]] = set()
        self._streams: set[_Watch] = set()
        self._guarded: dict[int, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}  # by id of grpc's handler

    @property
    def streams(self) -> int:
        return len(self._streams)

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                handler_call_details: grpc.HandlerCallDetails) -> Any:
        return self.guarded(await continuation(handler_call_details))

    def guarded(self, handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler | None:
        """``handler`` as the guard serves it (made once per handler). A server that has an interceptor
        already hands its handlers here from it (``CoreBacklog``): each interceptor costs a call about 3%
        of an empty call's CPU."""
        if handler is None:
            return None
        known = self._guarded.get(id(handler))
        if known is None or known[0] is not handler:
            if len(self._guarded) > 1024:  # handlers made per call by some generic handler: never a leak
                self._guarded.clear()
            known = self._guarded[id(handler)] = (handler, self._guard(handler))
        return known[1]

    # ---------------------------------------------------------------- wrapping grpc's handlers

    def _guard(self, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        if not handler.request_streaming and not handler.response_streaming:
            if not inspect.iscoroutinefunction(handler.unary_unary):
                return handler  # a sync handler runs in grpc's thread pool, on its own terms
            return handler._replace(request_streaming=True, unary_unary=None,
                                    stream_unary=self._read_first(handler.unary_unary))
        name = ("stream_stream" if handler.request_streaming else "unary_stream") if handler.response_streaming \
            else "stream_unary"
        behavior = getattr(handler, name)
        if inspect.isasyncgenfunction(behavior):
            guarded = self._generator(behavior, handler.request_streaming)
        elif inspect.iscoroutinefunction(behavior):
            guarded = self._coroutine(behavior)
        else:
            return handler
        return handler._replace(**{name: guarded})

    def _read_first(self, behavior: Behavior) -> Behavior:
        async def read_first(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            task = asyncio.current_task()
            assert task is not None
            self._reading[task] = self.clock() + self.config.read_timeout_s
            try:
                request = await context.read()
            except asyncio.CancelledError:
                if task in self._expired:
                    self._expired.discard(task)
                    task.uncancel()
                    await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED,
                                        f"the request message did not come within {self.config.read_timeout_s:g} s "
                                        "of the call's start (STREAMREC_SERVE_READ_TIMEOUT_S)")
                raise
            finally:
                self._reading.pop(task, None)
            if request is grpc.aio.EOF:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the call ended without its request message")
            return await behavior(request, context)
        return read_first

    async def _admit(self, context: grpc.aio.ServicerContext, idle_s: float | None) -> _Watch:
        if len(self._streams) >= self.config.max_streams:
            self.on_end("too_many_streams")
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"this server process has {self.config.max_streams} streams open, its most "
                                "(STREAMREC_SERVE_MAX_STREAMS); retry later, or send unary calls")
        task = asyncio.current_task()
        assert task is not None
        watch = _Watch(task, self.clock(), idle_s)
        self._streams.add(watch)
        return watch

    def _coroutine(self, behavior: Behavior) -> Behavior:
        """A handler that writes through its context: counted, never idle (a health Watch waits for changes)."""
        async def counted(request: Any, context: grpc.aio.ServicerContext) -> Any:
            watch = await self._admit(context, None)
            try:
                return await behavior(request, context)
            finally:
                self._streams.discard(watch)
        return counted

    def _generator(self, behavior: Behavior, request_streaming: bool) -> Behavior:
        async def watched(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
            watch = await self._admit(context, self.config.stream_idle_s)
            answers = behavior(self._touching(request, watch) if request_streaming else request, context)
            try:
                while True:
                    try:
                        answer = await anext(answers)
                    except StopAsyncIteration:
                        return
                    except asyncio.CancelledError:
                        if watch.expired:
                            watch.task.uncancel()
                            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                                f"the stream was idle for {self.config.stream_idle_s:g} s "
                                                "(STREAMREC_SERVE_STREAM_IDLE_S); open a new one")
                        raise
                    watch.writing = True
                    yield answer
                    watch.writing = False
                    watch.last = self.clock()
            finally:
                self._streams.discard(watch)
                await answers.aclose()
        return watched

    async def _touching(self, requests: AsyncIterator[Any], watch: _Watch) -> AsyncIterator[Any]:
        async for request in requests:
            watch.last = self.clock()
            yield request

    # ---------------------------------------------------------------- the sweep

    def sweep(self) -> None:
        """Cancel the calls past their limit; each sends its own status when the cancellation reaches it."""
        now = self.clock()
        late = [task for task, expires in self._reading.items() if expires <= now]
        for task in late:
            del self._reading[task]
            self._expired.add(task)
            task.cancel()
            self.on_end("read_timeout")
        for watch in self._streams:
            if (watch.idle_s is not None and not watch.writing and not watch.expired
                    and now - watch.last >= watch.idle_s):
                watch.expired = True
                watch.task.cancel()
                self.on_end("stream_idle")
        self._expired = {task for task in self._expired if not task.done()}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.config.sweep_every_s)
            self.sweep()
