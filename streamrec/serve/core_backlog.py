"""How many calls gRPC core holds for this server that grpc.aio has not taken in yet.

grpc.aio takes in one call at a time, a few event-loop turns each. While a batch runs on the loop,
calls arrive and wait in gRPC core, where no bound or timeout of ours sees them; between batches the
loop must take them all in (and admit or refuse each) before it runs the next one, or under a flood
they pile up there. The batcher used to rest for twice a full batch's duration to be sure of that,
and at twice the saturation rate the loop then sat idle for much of the rest (docs/serving-log.md).
Counting tells it when the backlog is gone instead:

- gRPC core counts every call it starts (channelz ``callsStarted``, counted when the call arrives);
- an interceptor counts every call grpc.aio takes in, including the ones its concurrency limit
  then refuses (interceptors run before that check).

The difference is the backlog, plus the calls that ended in core without ever being taken in (a
client that gave up first), which only accumulate. ``note_idle`` takes that count as the new floor
whenever the loop is idle; a reading below the floor lowers it.

A process with several listeners (``STREAMREC_SERVE_LISTENERS``) makes each through the same
``CoreBacklog``: the started calls are summed over them, and one interceptor counts what they all take in.

channelz is read through grpc's Cython module (``grpc_channelz`` does the same); where it is missing,
or a server is not found, ``backlog()`` is None and the batcher rests as long as before.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

__all__ = ["CoreBacklog"]

logger = logging.getLogger(__name__)


class _Intake(grpc.aio.ServerInterceptor):
    def __init__(self, backlog: CoreBacklog) -> None:
        self.backlog = backlog

    async def intercept_service(self, continuation: Callable[[grpc.HandlerCallDetails], Awaitable[Any]],
                                handler_call_details: grpc.HandlerCallDetails) -> Any:
        self.backlog.taken += 1
        return self.backlog.handlers(await continuation(handler_call_details))


class CoreBacklog:
    """``server(...)`` makes a grpc.aio server whose calls it counts (call it once per listener); then
    ``backlog()`` is the count of calls waiting in gRPC core for all of them (None: unknown)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, idle_every_s: float = 1.0,
                 handlers: Callable[[Any], Any] = lambda handler: handler) -> None:
        self.taken = 0
        self.handlers = handlers  # each call's method handler goes through it: what a second interceptor would do
        self.interceptor = _Intake(self)
        self.clock = clock
        self.idle_every_s = idle_every_s  # reading channelz costs ~60 us: the floor is refreshed this often at most
        self._started: list[Callable[[], int]] = []
        self._readable = True  # False once a server could not be found in channelz, or has stopped
        self._floor = 0  # started calls that will never be taken in (ended in core)
        self._idle_at = float("-inf")

    def server(self, **kwargs: Any) -> grpc.aio.Server:
        """``grpc.aio.server(**kwargs)`` with the counting interceptor first. channelz names a server
        by the address asked for (port 0 stays 0), so it is told apart as the one this call added."""
        before = _server_ids()
        server = grpc.aio.server(interceptors=[self.interceptor, *(kwargs.pop("interceptors", None) or ())], **kwargs)
        after = _server_ids()
        added = after - before if after is not None and before is not None else set()
        if len(added) == 1 and self._readable:
            self._attach(added.pop())
        else:
            self._readable = False
            logger.info("gRPC core's backlog is not readable here; batches rest for a fixed share of their time")
        return server

    def _attach(self, server_id: int) -> None:
        from grpc._cython import cygrpc

        def started() -> int:
            data = json.loads(cygrpc.channelz_get_server(server_id))["server"]["data"]
            return int(data.get("callsStarted", 0))

        self._started.append(started)
        self._floor = self._excess() or 0

    def started(self) -> list[int] | None:
        """Calls gRPC core has started, per listener (diagnostics, tests); None where channelz is not read."""
        if not (self._readable and self._started):
            return None
        try:
            return [started() for started in self._started]
        except (ValueError, KeyError, TypeError):
            self._readable = False
            return None

    def backlog(self) -> int | None:
        excess = self._excess()
        if excess is None:
            return None
        self._floor = min(self._floor, excess)
        return excess - self._floor

    def note_idle(self) -> None:
        """The loop has nothing queued nor running: whatever core still counts as not taken in ended
        there (a call waiting in core would have been taken in by now)."""
        now = self.clock()
        if now - self._idle_at >= self.idle_every_s and (excess := self._excess()) is not None:
            self._idle_at = now
            self._floor = max(self._floor, excess)

    def _excess(self) -> int | None:
        """Calls started in core less calls taken in; None once channelz no longer knows a server (it
        stopped): the batcher then pauses as it would without a count."""
        started = self.started()
        return None if started is None else sum(started) - self.taken


def _server_ids() -> set[int] | None:
    """The channelz ids of this process's gRPC servers, page after page; None where channelz cannot be
    read."""
    try:
        from grpc._cython import cygrpc

        ids: set[int] = set()
        start = 0
        while True:
            page = json.loads(cygrpc.channelz_get_servers(start))
            found = {int(s["ref"]["serverId"]) for s in page.get("server", [])}
            ids |= found
            if page.get("end", True) or not found:
                return ids
            start = max(found) + 1
    except (ImportError, AttributeError, ValueError, KeyError, TypeError):
        return None
