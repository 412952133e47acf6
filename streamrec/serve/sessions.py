"""The server's view of Redis: live sessions and recent popularity, with short timeouts.

Redis being slow or down must cost a request milliseconds, not seconds: every call has a hard
timeout, redis-py's own retries are off, and after a failure Redis is not tried again for
``backoff_s`` (the requests in between go straight to the fallback). ``RedisUnavailable`` tells the
caller to answer in degraded mode.

A call cut short by its caller's own deadline is not Redis failing: it raises ``TimeoutError`` (the
caller is gone) and leaves Redis trusted. Otherwise one request that arrived with 2 ms to spare, as
many do when the server is over capacity, would send every request for the next ``backoff_s`` to the
fallback: an overload answered with popularity, flagged degraded, instead of refused. For the same
reason a call that runs out its own ``timeout_s`` is the server being slow, not Redis, when other
calls got their answers meanwhile, or when the event loop's thread was runnable for most of the wait
(``streamrec.serve.runnable``): the loop was too busy to read an answer that had arrived. It raises
``Overloaded`` (the client gets RESOURCE_EXHAUSTED) and trips nothing. The first test alone was not
enough: reads asked for together share one round trip, so after a flood, while the loop took in the
calls that had piled up in gRPC core, a whole round trip's callers timed out at once with no answer
between, and Redis was backed off for a second of degraded answers (docs/serving-log.md).

Recent popularity is one list, cached for ``popular_ttl_s``: when it is due, one read refreshes it
and every request that needs it meanwhile waits for that read, each within its own deadline.
Otherwise a batch of requests answered together found it due together and sent a read each.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from streamrec.errors import Overloaded, RedisUnavailable
from streamrec.redis_access import async_client
from streamrec.serve.runnable import RunnableClock
from streamrec.stream.session_store import SessionTail, cooc_key, pop_keys, read_sessions

__all__ = ["SessionSource"]

logger = logging.getLogger(__name__)


class SessionSource:
    """Reads sessions and the worker's recent popularity. ``clock`` is injectable for tests."""

    def __init__(self, url: str, prefix: str, *, timeout_s: float = 0.1, backoff_s: float = 1.0,
                 popular_ttl_s: float = 1.0, popular_n: int = 1000, busy_share: float = 0.5,
                 clock: Callable[[], float] = time.monotonic, cluster: bool = False) -> None:
        self.prefix = prefix
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.popular_ttl_s = popular_ttl_s
        self.popular_n = popular_n
        self.busy_share = busy_share  # a timeout is the loop's when its thread was runnable this much of the wait
        self._clock = clock
        self._runnable = RunnableClock()
        # rediss:// URLs (TLS) and credentials in the URL are handled by redis-py; every read is one key,
        # so a Redis Cluster (``cluster``) needs nothing more
        # RESP2: over RESP3, redis-py 8 turns each score it parsed back into text and parses it again, to give
        # the RESP2 shapes. With ``SessionTail``'s lists, a read alone costs 95 µs of CPU here against 129 to 143
        # (``streamrec bench session-reads``, 50-event sessions)
        self._client = async_client(url, cluster=cluster, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                                    retry=Retry(NoBackoff(), 0), health_check_interval=0, protocol=2)
        self._down_until = 0.0
        self._answered_at = float("-inf")  # when a call last got its answer
        self._popular: tuple[float, list[str]] | None = None
        self._popular_read: asyncio.Future[list[str]] | None = None  # the refresh in flight
        self._reads: list[tuple[str, asyncio.Future[SessionTail]]] = []  # waiting for the read in flight
        self._reading: asyncio.Future[None] | None = None  # the read in flight
        self.round_trips = 0  # session reads sent (``streamrec bench session-reads``)

    async def close(self) -> None:
        for pending in (self._reading, self._popular_read):
            if pending is not None:
                pending.cancel()
        await self._client.aclose()
        self._runnable.close()

    async def _call(self, what: str, coro_fn: Callable[[], object], timeout_s: float | None) -> object:
        now = self._clock()
        if now < self._down_until:
            raise RedisUnavailable(f"Redis failed less than {self.backoff_s}s ago; not retried yet")
        mark = self._runnable.mark()
        by_caller = timeout_s is not None and timeout_s < self.timeout_s
        limit = max(timeout_s, 0.001) if by_caller and timeout_s is not None else self.timeout_s
        try:
            # wait_for, not asyncio.timeout: a call's own task costs a loop turn, in which the other calls
            # answered by then finish too, so their requests join the same batch (with asyncio.timeout the
            # batches at saturation shrank from 12-22 requests to 2-3, and CPU per request grew by 25-80%).
            # A session read is a future, set with the others of its round trip (``session``).
            answer = await asyncio.wait_for(coro_fn(), limit)  # type: ignore[arg-type]
            self._answered_at = self._clock()
            return answer
        except TimeoutError:
            if by_caller:
                raise
            if self._answered_at > now:
                raise Overloaded("busy", f"the server is overloaded: Redis answered other calls, but this one's "
                                 f"{what} took over {limit * 1e3:.0f} ms; retry with backoff") from None
            if (busy := self._runnable.share(mark)) >= self.busy_share:
                raise Overloaded("busy", f"the server is overloaded: its event loop was busy for {busy:.0%} of the "
                                 f"{limit * 1e3:.0f} ms this {what} waited, too busy to read Redis's answer; "
                                 "retry with backoff") from None
            failure: Exception = TimeoutError(f"no answer within {limit * 1e3:.0f} ms")
        except (RedisError, OSError) as exc:
            failure = exc
        if now >= self._down_until:
            logger.warning("redis unavailable event=redis_down op=%s error=%s", what, type(failure).__name__)
        self._down_until = self._clock() + self.backoff_s
        raise RedisUnavailable(f"Redis {what} failed: {type(failure).__name__}: {failure}") from failure

    async def session(self, session_id: str, timeout_s: float | None = None) -> SessionTail:
        """The session's items and their times, oldest first; empty if unknown or expired.

        One read is in flight at a time. The reads asked for meanwhile wait for it and then go to
        Redis together, as one pipeline (``read_sessions``): under load one round trip serves a burst,
        with one write, one read and one pass of redis-py's per-command machinery where each read cost
        its own, in the server and in Redis (which shares the server's cores). At low load a read goes
        at once, alone. Reads answered together also let their requests join one pipeline batch.
        """
        return await self._call("read_session", lambda: self._queued(session_id), timeout_s)  # type: ignore[return-value]

    def _queued(self, session_id: str) -> asyncio.Future[SessionTail]:
        future: asyncio.Future[SessionTail] = asyncio.get_running_loop().create_future()
        self._reads.append((session_id, future))
        if self._reading is None:
            self._send_reads()
        return future

    def _send_reads(self) -> None:
        reads = [(sid, future) for sid, future in self._reads if not future.done()]  # done: its caller gave up
        self._reads = []
        self._reading = asyncio.ensure_future(self._read(reads)) if reads else None
        self.round_trips += bool(reads)

    async def _read(self, reads: list[tuple[str, asyncio.Future[SessionTail]]]) -> None:
        try:
            answers = await read_sessions(self._client, self.prefix, [sid for sid, _ in reads])
        except asyncio.CancelledError:  # closing: nothing more is read
            for _, future in [*reads, *self._reads]:
                future.cancel()
            self._reads, self._reading = [], None
            raise
        except Exception as exc:  # noqa: BLE001 - each caller's _call tells what it means
            for _, future in reads:
                if not future.done():
                    future.set_exception(exc)
        else:
            for (_, future), tail in zip(reads, answers, strict=True):
                if not future.done():
                    future.set_result(tail)
        self._send_reads()  # those that came meanwhile, together

    async def recent_popular(self, timeout_s: float | None = None) -> list[str]:
        """Item ids by the worker's time-decayed popularity, best first (cached for ``popular_ttl_s``).
        ``timeout_s`` ends this caller's wait only: the read it waits for is shared, and runs to the
        server's own timeout."""
        now = self._clock()
        if self._popular is not None and now - self._popular[0] < self.popular_ttl_s:
            return self._popular[1]
        if self._popular_read is None:
            self._popular_read = asyncio.ensure_future(self._read_popular(now))
            self._popular_read.add_done_callback(self._popular_read_done)
        shared = asyncio.shield(self._popular_read)
        return await (shared if timeout_s is None else asyncio.wait_for(shared, max(timeout_s, 0.0)))

    async def _read_popular(self, asked_at: float) -> list[str]:
        decayed = pop_keys(self.prefix)[0]
        rows = await self._call("recent_popular", lambda: self._client.zrevrange(decayed, 0, self.popular_n - 1),
                                None)
        items = [r.decode() if isinstance(r, bytes) else str(r) for r in rows]  # type: ignore[union-attr]
        self._popular = (asked_at, items)
        return items

    def _popular_read_done(self, read: asyncio.Future[list[str]]) -> None:
        """The refresh is over; its failure, if no caller waited for it any more, is not logged as lost."""
        self._popular_read = None
        if not read.cancelled():
            read.exception()

    async def cooccurring(self, item_ids: Sequence[str], n: int,
                          timeout_s: float | None = None) -> list[list[tuple[str, float]]]:
        """For each item, its ``n`` most frequent co-occurring items with their counts (one round trip)."""
        if not item_ids:
            return []

        async def read() -> list[object]:
            async with self._client.pipeline(transaction=False) as pipe:
                for item in item_ids:
                    pipe.zrevrange(cooc_key(self.prefix, item), 0, n - 1, withscores=True)
                return await pipe.execute()  # type: ignore[no-any-return]

        rows = await self._call("cooccurring", read, timeout_s)
        return [[(m.decode() if isinstance(m, bytes) else str(m), float(s)) for m, s in row]  # type: ignore[union-attr]
                for row in rows]  # type: ignore[union-attr]

    async def cooc_counts(self, candidates: Sequence[str], item_ids: Sequence[str],
                          timeout_s: float | None = None) -> list[list[float]]:
        """For each candidate, how often it co-occurred with each of ``item_ids`` (0 for never; one round trip)."""
        if not candidates or not item_ids:
            return [[0.0] * len(item_ids) for _ in candidates]

        async def read() -> list[object]:
            async with self._client.pipeline(transaction=False) as pipe:
                for item in candidates:
                    pipe.zmscore(cooc_key(self.prefix, item), list(item_ids))
                return await pipe.execute()  # type: ignore[no-any-return]

        rows = await self._call("cooc_counts", read, timeout_s)
        return [[float(s) if s is not None else 0.0 for s in row] for row in rows]  # type: ignore[union-attr]
