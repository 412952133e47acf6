"""The micro-batcher's contract: own answers, batches formed from waiting requests, errors and
deadlines confined to their own request. Pure asyncio and threads: no services."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

from streamrec.errors import ConfigError, Overloaded
from streamrec.serve.batcher import Arrival, BatcherConfig, MicroBatcher


class Recorder:
    """A batch function that squares numbers, refuses negative ones, records each batch, and can be
    held at a gate so that requests pile up behind the running batch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = threading.Event()
        self.gate.set()

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        self.gate.wait(5)
        if any(i < 0 for i in items):
            raise ValueError("negative")
        return [i * i for i in items]


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_waiting_requests_share_a_batch_and_each_gets_its_own_answer() -> None:
    fn = Recorder()

    async def main() -> list[int]:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(fn, pool, BatcherConfig(max_batch=4))
            fn.gate.clear()
            first = asyncio.ensure_future(batcher.submit(100))
            await asyncio.sleep(0.05)  # the first batch ([100]) is running, held at the gate
            rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(10)]
            await asyncio.sleep(0.05)
            fn.gate.set()
            return [await first, *[await r for r in rest]]

    assert run(main()) == [10000, *[i * i for i in range(10)]]
    assert fn.batches == [[100], [0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_a_failing_request_fails_alone() -> None:
    fn = Recorder()

    async def main() -> list[object]:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(fn, pool, BatcherConfig(max_batch=8))
            fn.gate.clear()
            blocker = asyncio.ensure_future(batcher.submit(1))
            await asyncio.sleep(0.05)
            calls = [asyncio.ensure_future(batcher.submit(i)) for i in (2, -3, 4)]
            await asyncio.sleep(0.05)
            fn.gate.set()
            await blocker
            return list(await asyncio.gather(*calls, return_exceptions=True))

    got = run(main())
    assert got[0] == 4 and got[2] == 16 and isinstance(got[1], ValueError)
    assert fn.batches[1] == [2, -3, 4] and fn.batches[2:] == [[2], [-3], [4]]  # retried one by one


def test_a_request_past_its_deadline_times_out_and_is_not_run() -> None:
    fn = Recorder()

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(fn, pool, BatcherConfig(max_batch=8))
            fn.gate.clear()
            blocker = asyncio.ensure_future(batcher.submit(1))
            await asyncio.sleep(0.05)
            late = asyncio.ensure_future(batcher.submit(7, timeout_s=0.05))
            patient = asyncio.ensure_future(batcher.submit(8, timeout_s=5))
            with pytest.raises(TimeoutError):
                await late
            fn.gate.set()
            assert await blocker == 1 and await patient == 64

    run(main())
    assert [7] not in fn.batches and all(7 not in b for b in fn.batches)


def test_max_wait_gathers_requests_that_arrive_close_together() -> None:
    fn = Recorder()

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(fn, pool, BatcherConfig(max_batch=8, max_wait_s=0.05))
            calls = []
            for i in range(3):
                calls.append(asyncio.ensure_future(batcher.submit(i)))
                await asyncio.sleep(0.005)
            assert await asyncio.gather(*calls) == [0, 1, 4]

    run(main())
    assert fn.batches == [[0, 1, 2]]


def test_bad_configs_are_refused() -> None:
    with pytest.raises(ConfigError, match="max_batch"):
        BatcherConfig(max_batch=0)


def test_a_request_whose_caller_went_away_is_not_run() -> None:
    fn = Recorder()

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(fn, pool, BatcherConfig(max_batch=8))
            fn.gate.clear()
            blocker = asyncio.ensure_future(batcher.submit(1))
            await asyncio.sleep(0.05)
            gone = asyncio.ensure_future(batcher.submit(5))
            kept = asyncio.ensure_future(batcher.submit(6))
            await asyncio.sleep(0.01)
            gone.cancel()
            fn.gate.set()
            assert await blocker == 1 and await kept == 36

    run(main())
    assert fn.batches == [[1], [6]]


# ---------------------------------------------------------------- load shedding


def test_past_max_queue_a_request_is_refused_at_once_and_the_admitted_ones_are_answered() -> None:
    fn = Recorder()

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(fn, pool, BatcherConfig(max_batch=2, max_queue=3))
            fn.gate.clear()
            running = asyncio.ensure_future(batcher.submit(1))
            await asyncio.sleep(0)  # its first step ran: the batch [1] holds the only worker, at the gate
            queued = [asyncio.ensure_future(batcher.submit(i)) for i in (2, 3, 4)]
            refused = asyncio.ensure_future(batcher.submit(5))
            await asyncio.sleep(0)  # one step each: three queue, the fourth is refused then and there
            assert refused.done() and not any(q.done() for q in queued)
            error = refused.exception()
            assert isinstance(error, Overloaded) and error.reason == "queue_full"
            assert "overloaded" in str(error) and "STREAMREC_SERVE_MAX_QUEUE=3" in str(error)
            fn.gate.set()
            assert await running == 1 and [await q for q in queued] == [4, 9, 16]
            assert await batcher.submit(6) == 36  # room again

    run(main())
    assert all(5 not in b for b in fn.batches)


def test_a_caller_who_gave_up_frees_its_place_in_the_queue() -> None:
    fn = Recorder()

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(fn, pool, BatcherConfig(max_batch=2, max_queue=2))
            fn.gate.clear()
            running = asyncio.ensure_future(batcher.submit(1))
            await asyncio.sleep(0)
            gone, kept = asyncio.ensure_future(batcher.submit(2)), asyncio.ensure_future(batcher.submit(3))
            await asyncio.sleep(0)
            gone.cancel()
            late = asyncio.ensure_future(batcher.submit(4))
            await asyncio.sleep(0)
            assert not late.done(), "admitted in the place of the caller who left"
            fn.gate.set()
            assert await running == 1 and await kept == 9 and await late == 16

    run(main())
    assert fn.batches == [[1], [3, 4]]


def test_a_request_is_refused_when_the_queue_timeout_passes_unstarted_whatever_its_own_deadline() -> None:
    fn = Recorder()

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(fn, pool, BatcherConfig(max_batch=8, queue_timeout_s=0.05))
            fn.gate.clear()
            running = asyncio.ensure_future(batcher.submit(1))
            await asyncio.sleep(0)
            # the pipeline stays blocked: only the queue timeout can end these waits (run() fails a hang)
            for timeout_s in (None, 60.0):
                with pytest.raises(Overloaded, match="queue timeout of 50 ms") as info:
                    await batcher.submit(7, timeout_s)
                assert info.value.reason == "queue_timeout"
            with pytest.raises(TimeoutError):  # a deadline shorter than the queue timeout ends it first
                await batcher.submit(7, 0.01)
            fn.gate.set()
            assert await running == 1  # past its queue timeout too, but started before: it runs to the end

    run(main())
    assert fn.batches == [[1]]


def test_the_queue_timeout_is_checked_by_the_clock_when_a_worker_frees() -> None:
    fn = Recorder()
    now = [0.0]

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(fn, pool, BatcherConfig(max_batch=8, queue_timeout_s=30.0),
                                   clock=lambda: now[0])
            fn.gate.clear()
            running = asyncio.ensure_future(batcher.submit(1))
            await asyncio.sleep(0)
            late = asyncio.ensure_future(batcher.submit(7))
            patient = asyncio.ensure_future(batcher.submit(8, timeout_s=60.0))
            await asyncio.sleep(0)
            now[0] = 20.0
            in_time = asyncio.ensure_future(batcher.submit(9))
            await asyncio.sleep(0)
            now[0] = 31.0  # past the queue timeout (30 s by the clock) of the first two, within the third's
            fn.gate.set()
            assert await running == 1 and await in_time == 81
            for refused in (late, patient):  # a caller's own longer deadline does not lift the server's bound
                with pytest.raises(Overloaded, match="queue timeout of 30000 ms"):
                    await refused

    run(main())
    assert fn.batches == [[1], [9]]


@pytest.mark.parametrize("config", [{"max_queue": 0}, {"queue_timeout_s": 0.0}])
def test_shedding_bounds_must_be_positive(config: dict[str, float]) -> None:
    with pytest.raises(ConfigError, match="max_queue >= 1 and queue_timeout_s > 0"):
        BatcherConfig(**config)  # type: ignore[arg-type]


def test_on_the_event_loop_a_batch_waits_for_the_requests_announced_and_no_longer() -> None:
    fn = Recorder()

    async def main() -> list[int]:
        batcher = MicroBatcher(fn, None, BatcherConfig(max_batch=8, gather_s=60.0))  # only the announced end a wait
        first, second, third = batcher.arrive(), batcher.arrive(), batcher.arrive()
        a = asyncio.ensure_future(batcher.submit(1, arrival=first))
        await asyncio.sleep(0)  # submitted; waits for two more
        assert fn.batches == []
        b = asyncio.ensure_future(batcher.submit(2, arrival=second))
        await asyncio.sleep(0)
        third.leave()  # it answered without the pipeline (Redis down, say): nothing more is coming
        third.leave()  # twice changes nothing
        return [await a, await b]

    assert run(main()) == [1, 4]
    assert fn.batches == [[1, 2]]


def test_on_the_event_loop_a_request_alone_runs_at_once() -> None:
    fn = Recorder()

    async def main() -> list[int]:
        batcher = MicroBatcher(fn, None, BatcherConfig(max_batch=2, gather_s=60.0))
        alone = await batcher.submit(3, arrival=batcher.arrive())  # nothing else is coming: no wait
        unannounced = await batcher.submit(4)  # RecommendForSequence reads no session: it never arrives
        return [alone, unannounced]

    assert run(main()) == [9, 16]
    assert fn.batches == [[3], [4]]


def test_on_the_event_loop_a_batch_leaves_the_loop_to_its_io_for_a_share_of_its_own_duration() -> None:
    spans: list[tuple[float, float]] = []

    def slow(items: Sequence[int]) -> list[int]:
        start = time.perf_counter()
        time.sleep(0.02)  # the pipeline holds the loop
        spans.append((start, time.perf_counter()))
        return list(items)

    async def main() -> tuple[list[int], int]:
        batcher = MicroBatcher(slow, None, BatcherConfig(max_batch=1, io_share=1.0))
        turns = 0

        async def io() -> None:  # stands for grpc.aio taking in calls: it needs loop turns between batches
            nonlocal turns
            while len(spans) < 3:
                turns += 1
                await asyncio.sleep(0)

        ticker = asyncio.ensure_future(io())
        answers = await asyncio.gather(*(batcher.submit(i) for i in range(3)))
        await ticker
        return answers, turns

    answers, turns = run(main())
    assert answers == [0, 1, 2]
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert start - end >= 0.9 * 0.02, spans  # io_share=1: a pause as long as the batch before it
    assert turns > 3  # and the loop turned in the pauses, not just once per batch


def test_requests_on_their_way_count_against_the_queue_bound() -> None:
    """A request admitted by ``arrive`` is still reading Redis when the next one asks: it will queue, so
    it counts, or a burst would all pass admission and only then find the queue full."""
    fn = Recorder()

    async def main() -> None:
        with ThreadPoolExecutor(1) as pool:
            batcher = MicroBatcher(fn, pool, BatcherConfig(max_batch=4, max_queue=2))
            fn.gate.clear()
            running = asyncio.ensure_future(batcher.submit(1))
            await asyncio.sleep(0)  # the worker is busy
            first, second = batcher.arrive(), batcher.arrive()
            with pytest.raises(Overloaded, match="2 requests already wait") as info:
                batcher.arrive()
            assert info.value.reason == "queue_full"
            first.leave()  # it answered without the pipeline: its place is free
            third = batcher.arrive()
            fn.gate.set()
            assert await running == 1
            assert await asyncio.gather(batcher.submit(2, arrival=second), batcher.submit(3, arrival=third)) == [4, 9]

    run(main())


@pytest.mark.parametrize("case", ["alone", "after_idle", "chained"])
def test_a_small_batch_of_a_chain_pauses_as_a_half_full_one_when_requests_wait_at_its_end(case: str) -> None:
    """Under load a batch of one must still let the loop take in calls for a while, or the next batch is
    as small (and each request costs more CPU). Alone it pauses for almost nothing; so does a batch that
    started on an idle loop, though a request came while it ran: at a moderate load that request runs
    next, unpaused. Only a batch whose own request waited for the one before (a chain) pauses as if
    half full."""
    spans: list[tuple[float, float]] = []
    during: list[Arrival] = []

    def slow(items: Sequence[int]) -> list[int]:
        start = time.perf_counter()
        time.sleep(0.04)
        if case == "chained" and list(items) == [1]:
            during.append(batcher.arrive())  # a request announced while the second batch runs
        spans.append((start, time.perf_counter()))
        return list(items)

    batcher = MicroBatcher(slow, None, BatcherConfig(max_batch=8, io_share=1.0, busy_share=0.5, gather_s=0.0))

    async def main() -> None:
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0)  # the first batch is taken with the first request alone, on an idle loop
        if case == "alone":
            await first
            await batcher.submit(1)
            return
        arrival = batcher.arrive()  # still reading Redis when the first batch ends
        if case == "after_idle":
            await first
            await batcher.submit(1, arrival=arrival)
            return
        second = asyncio.ensure_future(batcher.submit(1, arrival=arrival))  # queued as the first batch ends
        await first
        await second  # its batch was one of a chain: request 1 waited for the first batch
        await batcher.submit(2, arrival=during[0])

    run(main())
    gaps = [start - end for (_, end), (start, _) in itertools.pairwise(spans)]
    assert gaps[0] < 0.25 * 0.04, spans  # the first batch started on an idle loop: 1/8 of its run
    if case == "chained":
        assert gaps[1] >= 0.9 * 0.5 * 0.04, spans  # busy: paused as if half full


class FakeBacklog:
    """gRPC core's calls not yet taken in, as ``streamrec.serve.core_backlog`` would read them."""

    def __init__(self, waiting: int) -> None:
        self.waiting = waiting
        self.asked = 0
        self.idle = 0

    def backlog(self) -> int:
        self.asked += 1
        return self.waiting

    def note_idle(self) -> None:
        self.idle += 1


@pytest.mark.parametrize("waiting", [0, 5])
def test_the_pause_after_a_full_batch_ends_early_only_when_grpc_core_holds_no_call(waiting: int) -> None:
    """A full batch pauses twice as long as it ran, for grpc.aio to take in what arrived meanwhile. Once
    gRPC core holds nothing more (asked at ``check_share`` of the batch's duration), the rest of the
    pause would leave the loop idle: the next batch starts then. With calls still in core, it waits."""
    spans: list[tuple[float, float]] = []

    def slow(items: Sequence[int]) -> list[int]:
        start = time.perf_counter()
        time.sleep(0.1)  # long beside a busy machine's scheduling delays
        spans.append((start, time.perf_counter()))
        return list(items)

    backlog = FakeBacklog(waiting)
    batcher = MicroBatcher(slow, None, BatcherConfig(max_batch=2, io_share=2.0, check_share=0.5, gather_s=0.0),
                           backlog=backlog)

    async def main() -> list[int]:
        return await asyncio.gather(*(batcher.submit(i) for i in range(4)))  # two full batches

    assert run(main()) == [0, 1, 2, 3]
    (_, end), (start, _) = spans
    if waiting:
        assert start - end >= 0.9 * 2 * 0.1, spans  # the whole pause: calls wait in core
    else:
        assert 0.9 * 0.5 * 0.1 <= start - end < 1.5 * 0.1, spans  # ended at the check, not at 2 x 0.1
    assert backlog.asked >= 1 and backlog.idle == 1  # idle once both batches were over
