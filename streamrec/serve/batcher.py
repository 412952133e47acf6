"""Dynamic micro-batching: concurrent requests waiting for the pipeline share one batched call.

A batched pass over 32 sessions costs a fraction of 32 single passes (one onnxruntime call per
model instead of 32, one candidate union, one DeepFM call), so under load the server answers
more requests per CPU second, and each waits less. Batches form naturally: while ``workers``
batches run, new requests queue; when a worker frees, everything queued (up to ``max_batch``)
goes at once. At low load a request is run alone at once, never held back, unless ``max_wait_s``
asks to wait that long for company.

With no executor the batches run on the event loop itself. A process then has one thread to
schedule, and no hand-off between the loop and a worker per batch; on a server of one process per
core that is what keeps p99 low at moderate load. Batches still form: a batch is taken when its turn
comes on the loop, and it waits (``gather_s`` at most) for the requests that have announced
themselves (``arrive``: they passed admission and are reading their session from Redis) but not yet
submitted. So the requests that arrived while the last batch ran go together, as they do when a
worker thread runs the batches, and a request that is alone runs at once.

On the loop, a batch also leaves the loop to its I/O for a while (``io_share`` of the batch's own
duration, times its share of ``max_batch``: a batch of one pauses for almost nothing, a full one
twice as long as it ran) before the next one starts. When requests already wait at its end, the
share is ``busy_share`` (half) at least, if the batch was one of a chain: its oldest request had to
wait for the batch before and its pause. Under load, small batches otherwise paused for little, took
in few calls, and the next batch was small again. A server at saturation stayed in that state for
whole runs (batches of 2 to 6, against 20 to 30 with the floor on the share, and 20 to 50% more CPU
per request). At low load nothing waits when a batch ends, and nothing changes. At a moderate load a
request often arrives while a batch runs that started on an idle loop: it runs right after, unpaused
(the floor after every such batch cost about 1 ms of p99 at 500 requests/s, docs/serving-log.md).
grpc.aio takes a new call from gRPC core one at a time, a few loop turns each; when every turn runs
a batch, calls pile up in gRPC core, where no queue bound or timeout of ours sees them: at twice the
saturation rate they waited up to a second there, and were then served, late. The pause takes them in faster, and more per turn, which costs
less CPU each; under a flood some wait there still (docs/operations.md, "Serving").

A full batch pauses twice as long as it ran, which a flood needs only at times: the loop must take in
(admit or refuse) what arrived while the batch ran, and what arrives while it does so. Given a
``backlog`` (``streamrec.serve.core_backlog``: gRPC core's calls not yet taken in), the pause after a
full batch ends at ``check_share`` of the batch's duration if that is 0 then. At twice the saturation
rate the loop otherwise sat idle through the rest of the pause: two processes answered 73 to 82% of
their saturation rate, and 84 to 109% with the check (docs/serving-log.md).

Guarantees the servicer relies on:

- each caller gets its own answer (the batch function maps items to results in order);
- a failing batch is retried item by item, so one bad request fails alone;
- an item whose caller gave up (deadline passed, client gone) is dropped before it is run.

Load shedding (the Triton way: a max queue size and a queue timeout). Without a bound, a flood
queues without end: every request then waits longer than any client will, and the server spends
its CPU on answers nobody reads. So:

- at most ``max_queue`` items wait for a worker; one more is refused at once (``Overloaded``,
  reason ``queue_full``: the servicer answers RESOURCE_EXHAUSTED), at the cost of a comparison;
- an item may wait ``queue_timeout_s`` for a worker, no more (``Overloaded``, reason
  ``queue_timeout``), whatever its caller's deadline: a wait that long means the server is over its
  capacity, and an answer served after it is late for every caller. Once started an item runs to the
  end: a pipeline pass is milliseconds, and its answer is paid for. An item with a timeout of its own
  is also dropped when that passes, queued or running (``TimeoutError``: the caller is gone).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from streamrec.errors import ConfigError, Overloaded

__all__ = ["Arrival", "Backlog", "BatcherConfig", "MicroBatcher"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class BatcherConfig:
    max_batch: int = 32  # 1 = no batching
    max_wait_s: float = 0.0  # how long the first queued item may wait for more; 0 = natural batching only
    gather_s: float = 0.001  # on the event loop: how long the first queued item waits for announced requests
    workers: int = 1  # batches running at once (executor threads; 1 on the event loop)
    max_queue: int | None = None  # items waiting for a worker at most; None = no bound (the server sets one)
    queue_timeout_s: float | None = None  # longest wait of any item for a worker; None = no limit
    io_share: float = 2.0  # on the event loop: pause after a full batch, as a share of its duration, for the loop's I/O
    busy_share: float = 0.5  # ... and after a batch of a chain at whose end requests wait, as if at least this full
    check_share: float = 1.0  # ... but it ends this far in (share of the batch's duration) if gRPC core holds no call

    def __post_init__(self) -> None:
        if (self.max_batch < 1 or self.workers < 1 or self.max_wait_s < 0 or self.gather_s < 0
                or self.io_share < 0 or not 0 <= self.busy_share <= 1 or self.check_share < 0):
            raise ConfigError(f"a batcher needs max_batch and workers >= 1, max_wait_s, gather_s, io_share and "
                              f"check_share >= 0 and busy_share in [0, 1], got {self}")
        if (self.max_queue is not None and self.max_queue < 1) or (
                self.queue_timeout_s is not None and not self.queue_timeout_s > 0):
            raise ConfigError(f"a batcher needs max_queue >= 1 and queue_timeout_s > 0 (or None: no bound), "
                              f"got {self}")


class Backlog(Protocol):
    """gRPC core's calls not yet taken in (``streamrec.serve.core_backlog``)."""

    def backlog(self) -> int | None: ...

    def note_idle(self) -> None: ...


@dataclass(eq=False)
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    queued_at: float
    deadline: float | None  # perf_counter time after which the caller no longer waits
    shed_at: float | None = None  # the clock's time after which it is refused unless started (queue_timeout_s)
    started: bool = False
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False)
class Arrival:
    """A request on its way to ``submit`` (``MicroBatcher.arrive``). ``leave`` when it will not submit
    after all (an error, a degraded answer); leaving twice, or after submitting, does nothing."""

    batcher: MicroBatcher[Any, Any]
    left: bool = False

    def leave(self) -> None:
        self.batcher._depart(self, dispatch=True)


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class MicroBatcher(Generic[T, R]):
    """``await batcher.submit(item, timeout_s)`` runs ``run([... item ...])`` on ``executor``, or on the
    event loop when it is None.

    ``run`` maps a batch to one result per item, in order; it executes on the executor's threads, or
    on the loop.
    ``on_batch`` (e.g. a metrics histogram's ``observe``) is told each batch's size.
    """

    def __init__(self, run: Callable[[Sequence[T]], Sequence[R]], executor: Executor | None,
                 config: BatcherConfig = BatcherConfig(), on_batch: Callable[[int], None] | None = None,
                 clock: Callable[[], float] = time.perf_counter, backlog: Backlog | None = None) -> None:
        self.run = run
        self.backlog = backlog
        self.executor = executor
        self.config = config
        self.on_batch = on_batch
        self.clock = clock
        self._queue: deque[_Pending[T, R]] = deque()
        self._running = 0
        self._timer: asyncio.TimerHandle | None = None
        self._coming = 0  # arrived, not yet submitted nor left
        self._rest_until = 0.0  # on the loop: no batch before this clock time (``io_share``)
        self._check_at: float | None = None  # ... unless gRPC core holds no call then (``check_share``)
        self._timer_at = 0.0

    def arrive(self) -> Arrival:
        """``admit``, then count the request as coming: a batch on the event loop waits for it a little
        (``gather_s``). Pass the ``Arrival`` to ``submit``, or ``leave`` it."""
        self.admit()
        self._coming += 1
        return Arrival(self)

    async def submit(self, item: T, timeout_s: float | None = None, arrival: Arrival | None = None) -> R:
        """The item's result; ``TimeoutError`` when ``timeout_s`` passes first. ``Overloaded`` at once
        when ``max_queue`` items already wait, or when the item is not started within
        ``queue_timeout_s``. An ``arrival`` was admitted already."""
        if arrival is None:
            self.admit()
        loop = asyncio.get_running_loop()
        now = self.clock()
        future: asyncio.Future[R] = loop.create_future()
        shed = self.config.queue_timeout_s
        pending = _Pending(item, future, now, None if timeout_s is None else now + max(timeout_s, 0.0),
                           None if shed is None else now + shed)
        self._queue.append(pending)
        if arrival is not None:
            self._depart(arrival, dispatch=False)  # dispatched just below, with the item queued
        self._dispatch()
        # timers, not asyncio.wait_for: no extra task per request. A future failed here is skipped by _take
        if pending.deadline is None and pending.shed_at is None:
            return await future
        self._arm(pending, now)
        try:
            return await future
        finally:
            if pending.timer is not None:
                pending.timer.cancel()

    def _depart(self, arrival: Arrival, *, dispatch: bool) -> None:
        """``arrival`` is no longer coming: submitted, or gone without. Counted once."""
        if not arrival.left:
            arrival.left = True
            self._coming -= 1
            if dispatch:
                self._dispatch()

    def admit(self) -> None:
        """Raise ``Overloaded`` when a new item would be refused now: ``max_queue`` items wait or are on their
        way (``arrive``), and every worker is busy. ``submit`` checks it; a caller may too, before work it
        would waste on a refusal."""
        bound = self.config.max_queue
        if bound is None or len(self._queue) + self._coming < bound or self._running < self.config.workers:
            return
        self._queue = deque(p for p in self._queue if not p.future.done())  # callers who gave up wait no more
        if len(self._queue) + self._coming >= bound:
            raise Overloaded("queue_full", f"the server is overloaded: {len(self._queue) + self._coming} requests "
                             f"already wait for the pipeline (STREAMREC_SERVE_MAX_QUEUE={bound}); retry with backoff")

    def _arm(self, p: _Pending[T, R], now: float) -> None:
        """A timer for the item's next limit: the queue timeout while it may still be refused, then its own
        deadline."""
        shed = p.shed_at if p.shed_at is not None and not p.started else None
        if shed is not None and (p.deadline is None or shed < p.deadline):
            p.timer = asyncio.get_running_loop().call_later(shed - now, self._on_shed_timer, p)
        elif p.deadline is not None:
            p.timer = asyncio.get_running_loop().call_later(p.deadline - now, _expire, p.future)

    def _on_shed_timer(self, p: _Pending[T, R]) -> None:
        if p.future.done():
            return
        if not p.started:
            p.future.set_exception(self._late(p))
        else:
            self._arm(p, self.clock())

    def _late(self, p: _Pending[T, R]) -> Overloaded:
        limit_ms = (self.config.queue_timeout_s or 0.0) * 1e3
        return Overloaded("queue_timeout", f"the server is overloaded: the request waited the server's queue "
                          f"timeout of {limit_ms:.0f} ms (STREAMREC_SERVE_QUEUE_TIMEOUT_MS) for the pipeline "
                          "without starting; retry with backoff")

    def _dispatch(self) -> None:
        while self._running < self.config.workers and self._queue:
            now = self.clock()
            wait = self._queue[0].queued_at + self.config.max_wait_s - now
            if wait > 0 and len(self._queue) < self.config.max_batch:
                self._wake(now, wait)
                return
            if self.executor is None:
                rest = self._rest_left(now)
                if rest > 0:
                    self._wake(now, rest)
                    return
                gather = self._queue[0].queued_at + self.config.gather_s - now
                if self._coming and gather > 0 and len(self._queue) < self.config.max_batch:
                    self._wake(now, gather)
                    return
                self._running += 1
                asyncio.get_running_loop().call_soon(self._run_on_loop)  # taken then, with what arrived by then
                return
            batch = self._take()
            if batch:
                self._start(batch)

    def _rest_left(self, now: float) -> float:
        """How much longer the loop is left to its I/O. Past ``check_share`` of the batch's duration, the
        pause ends early if gRPC core holds no call that grpc.aio has not taken in: everything that
        arrived meanwhile has been admitted or refused, and the rest of the pause would be idle."""
        rest = self._rest_until - now
        if rest <= 0 or self._check_at is None:
            return rest
        if now < self._check_at:
            return min(rest, self._check_at - now)
        self._check_at = None
        return 0.0 if self.backlog is not None and self.backlog.backlog() == 0 else rest

    def _wake(self, now: float, after: float) -> None:
        """``_dispatch`` again in ``after`` seconds, unless a timer is set for sooner."""
        if self._timer is not None:
            if self._timer_at <= now + after + 1e-4:  # not sooner enough to be worth a new timer
                return
            self._timer.cancel()
        self._timer_at = now + after
        self._timer = asyncio.get_running_loop().call_later(after, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take(self) -> list[_Pending[T, R]]:
        now = self.clock()
        batch: list[_Pending[T, R]] = []
        while self._queue and len(batch) < self.config.max_batch:
            p = self._queue.popleft()
            if p.future.done():  # the caller gave up
                continue
            if p.deadline is not None and now >= p.deadline:
                p.future.set_exception(TimeoutError())
                continue
            if p.shed_at is not None and now >= p.shed_at:
                p.future.set_exception(self._late(p))
                continue
            p.started = True
            batch.append(p)
        return batch

    def _start(self, batch: list[_Pending[T, R]]) -> None:
        self._running += 1
        if self.on_batch is not None:
            self.on_batch(len(batch))
        items = [p.item for p in batch]
        done = asyncio.get_running_loop().run_in_executor(self.executor, self._run_isolated, items)
        done.add_done_callback(lambda f: self._finish(batch, f))

    def _run_on_loop(self) -> None:
        # did the oldest request wait for the loop (the last batch and its pause)? Then batches run back to back
        chained = bool(self._queue) and self._queue[0].queued_at < self._rest_until
        batch = self._take()
        if batch and self.on_batch is not None:
            self.on_batch(len(batch))
        start = self.clock()
        results = self._run_isolated([p.item for p in batch]) if batch else []
        end = self.clock()
        # a full batch says requests pile up, in our queue and in gRPC core's: they need loop turns to come in
        share = len(batch) / self.config.max_batch
        if chained and (self._queue or self._coming):  # under load: more calls are in gRPC core, let them in
            share = max(share, self.config.busy_share)
        self._rest_until = end + (end - start) * self.config.io_share * share
        full = self.backlog is not None and len(batch) >= self.config.max_batch  # a flood, not a closed loop
        self._check_at = end + (end - start) * self.config.check_share if full else None
        self._settle(batch, results)

    def _run_isolated(self, items: list[T]) -> list[R | BaseException]:
        """Results in order; when the batch fails, each item alone, so only the bad ones fail."""
        try:
            results = list(self.run(items))
            if len(results) != len(items):
                raise RuntimeError(f"batch function returned {len(results)} results for {len(items)} items")
            return results  # type: ignore[return-value]
        except Exception as exc:  # noqa: BLE001 - re-raised to the callers below
            if len(items) == 1:
                return [exc]
            logger.warning("batch failed, retrying its items one by one event=batch_failed size=%s error=%s",
                           len(items), type(exc).__name__)
        out: list[R | BaseException] = []
        for item in items:
            try:
                out.append(self.run([item])[0])
            except Exception as exc:  # noqa: BLE001
                out.append(exc)
        return out

    def _finish(self, batch: list[_Pending[T, R]], done: asyncio.Future[list[R | BaseException]]) -> None:
        if done.cancelled():  # the executor was shut down under it
            for p in batch:
                p.future.cancel()
            self._settle([], [])
            return
        error = done.exception()
        self._settle(batch, [error] * len(batch) if error is not None else done.result())

    def _settle(self, batch: list[_Pending[T, R]], results: Sequence[R | BaseException]) -> None:
        """A batch is over: its callers get their results, and the next one may start."""
        self._running -= 1
        for p, result in zip(batch, results, strict=True):
            if p.future.done():
                continue
            if isinstance(result, BaseException):
                p.future.set_exception(result)
            else:
                p.future.set_result(result)
        self._dispatch()
        if self.backlog is not None and not (self._queue or self._running or self._coming):
            self.backlog.note_idle()
