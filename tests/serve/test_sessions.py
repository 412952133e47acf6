"""``SessionSource``: Redis slow or down costs a request its short timeout once, then nothing for
``backoff_s``; recent popularity is cached; reads against the real Redis return what the worker wrote."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from streamrec.errors import Overloaded, RedisUnavailable
from streamrec.serve.sessions import SessionSource
from streamrec.settings import Settings
from streamrec.stream.session_store import SessionTail, cooc_key, pop_keys
from tests.serve.helpers import spin, write_session


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a Redis that hangs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield int(s.getsockname()[1])


def run(source: SessionSource, coro: Any) -> Any:
    async def go() -> Any:
        try:
            return await coro
        finally:
            await source.close()

    return asyncio.run(go())


def test_a_failure_backs_off_and_the_next_call_after_the_backoff_tries_again(closed_port: int) -> None:
    clock = Clock()
    source = SessionSource(f"redis://127.0.0.1:{closed_port}", "p:", timeout_s=0.5, backoff_s=1.0, clock=clock)

    async def scenario() -> list[str]:
        messages = []
        for advance in (0.0, 0.5, 0.6):  # down, backing off, tried again
            clock.now += advance
            with pytest.raises(RedisUnavailable) as caught:
                await source.session("s1")
            messages.append(str(caught.value))
        return messages

    first, during, after = run(source, scenario())
    assert "read_session failed" in first and "ConnectionError" in first
    assert "not retried yet" in during
    assert "read_session failed" in after


def test_a_hanging_redis_costs_the_short_timeout_or_the_request_deadline_if_sooner(silent_port: int) -> None:
    source = SessionSource(f"redis://127.0.0.1:{silent_port}", "p:", timeout_s=1.0, backoff_s=60.0)

    async def elapsed(deadline_s: float | None, error: type[Exception]) -> float:
        start = time.perf_counter()
        with pytest.raises(error):
            await source.session("s1", deadline_s)
        return time.perf_counter() - start

    async def scenario() -> tuple[float, float]:
        # the caller's deadline ends the first wait: the caller is gone, and Redis is not blamed for it,
        # so the next call still tries Redis, and its own timeout backs Redis off
        deadline = await elapsed(0.05, TimeoutError)
        own = await elapsed(None, RedisUnavailable)
        with pytest.raises(RedisUnavailable, match="not retried yet"):
            await source.session("s1")
        return own, deadline

    own, deadline = run(source, scenario())
    assert 0.95 < own < 10.0, own
    assert deadline < 0.5, deadline


def test_popularity_due_is_read_once_for_every_caller_each_within_its_own_deadline(silent_port: int) -> None:
    source = SessionSource(f"redis://127.0.0.1:{silent_port}", "p:", timeout_s=0.5, backoff_s=60.0)
    reads = 0
    real = source._client.zrevrange

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return real(*args, **kwargs)

    source._client.zrevrange = counted  # type: ignore[method-assign]

    async def scenario() -> list[type[BaseException]]:
        waits = [source.recent_popular(None), source.recent_popular(0.05), source.recent_popular(None)]
        outcomes = await asyncio.gather(*waits, return_exceptions=True)
        return [type(o) for o in outcomes]  # type: ignore[misc]

    # the one with a deadline leaves at it; the read runs to the server's timeout, which is Redis's
    assert run(source, scenario()) == [RedisUnavailable, TimeoutError, RedisUnavailable]
    assert reads == 1


def test_a_timeout_while_redis_answers_other_calls_is_the_server_overloaded_and_trips_nothing() -> None:
    source = SessionSource("redis://127.0.0.1:1", "p:", timeout_s=0.2, backoff_s=60.0)

    async def answer(after_s: float) -> str:
        await asyncio.sleep(after_s)
        return "answer"

    async def scenario() -> tuple[str, str]:
        # the slow call stands for an answer the busy loop read too late; the other one got its answer
        slow = asyncio.ensure_future(source._call("read_session", lambda: answer(10.0), None))
        assert await source._call("read_session", lambda: answer(0.01), None) == "answer"
        with pytest.raises(Overloaded, match="Redis answered other calls") as caught:
            await slow
        assert caught.value.reason == "busy"
        after = await source._call("read_session", lambda: answer(0.0), None)  # not backed off
        with pytest.raises(RedisUnavailable, match="TimeoutError"):  # alone, a timeout is Redis's
            await source._call("read_session", lambda: answer(10.0), None)
        return after, str(source._down_until > 0)

    assert run(source, scenario()) == ("answer", "True")


def test_a_timeout_while_the_event_loop_was_busy_is_the_server_overloaded_and_trips_nothing() -> None:
    source = SessionSource("redis://127.0.0.1:1", "p:", timeout_s=0.1, backoff_s=60.0)

    async def answer(after_s: float) -> str:
        await asyncio.sleep(after_s)
        for _ in range(2):  # arrived: read and parsed in later loop turns, as redis-py does
            await asyncio.sleep(0)
        return "answer"

    async def scenario() -> tuple[str, str]:
        # the answer comes within the timeout, but the loop runs other work until after it
        read = asyncio.ensure_future(source._call("read_session", lambda: answer(0.01), None))
        await asyncio.sleep(0)
        asyncio.get_running_loop().call_soon(spin, 0.3)  # a batch, or calls taken in, holding the loop
        with pytest.raises(Overloaded, match="event loop was busy") as caught:
            await read
        assert caught.value.reason == "busy"
        after = await source._call("read_session", lambda: answer(0.0), None)  # not backed off
        with pytest.raises(RedisUnavailable, match="TimeoutError"):  # on an idle loop, a timeout is Redis's
            await source._call("read_session", lambda: answer(10.0), None)
        return after, str(source._down_until > 0)

    assert run(source, scenario()) == ("answer", "True")


def test_empty_reads_need_no_redis(closed_port: int) -> None:
    source = SessionSource(f"redis://127.0.0.1:{closed_port}", "p:")

    async def scenario() -> tuple[Any, ...]:
        return (await source.cooccurring([], 5), await source.cooc_counts([], ["a"]),
                await source.cooc_counts(["a", "b"], []))

    assert run(source, scenario()) == ([], [], [[], []])


@pytest.mark.integration
def test_recent_popularity_is_read_best_first_and_cached_for_its_ttl(isolated: Settings) -> None:
    decayed = pop_keys(isolated.redis_prefix)[0]
    clock = Clock()
    source = SessionSource(isolated.redis_address, isolated.redis_prefix, timeout_s=2.0, popular_ttl_s=1.0,
                           popular_n=3, clock=clock)
    with redis.Redis.from_url(isolated.redis_address) as client:
        client.zadd(decayed, {"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.5})

        async def scenario() -> list[list[str]]:
            first = await source.recent_popular()
            client.zadd(decayed, {"e": 10.0})
            clock.now += 0.9
            cached = await source.recent_popular()
            clock.now += 0.2
            return [first, cached, await source.recent_popular()]

        first, cached, later = run(source, scenario())
    assert first == cached == ["a", "b", "c"]
    assert later == ["e", "a", "b"]


@pytest.mark.integration
def test_sessions_and_co_occurrence_counts_as_the_worker_wrote_them(isolated: Settings) -> None:
    write_session(isolated, "s1", ["10", "20", "30"])
    prefix = isolated.redis_prefix
    with redis.Redis.from_url(isolated.redis_address) as client:
        client.zadd(cooc_key(prefix, "a"), {"b": 3.0, "c": 1.0, "d": 2.0})
    source = SessionSource(isolated.redis_address, prefix, timeout_s=2.0)

    async def scenario() -> tuple[Any, ...]:
        return (await source.session("s1"), await source.session("unknown"),
                await source.cooccurring(["a", "nothing"], 2),
                await source.cooc_counts(["a", "nothing"], ["c", "b", "z"]))

    tail, unknown, neighbours, counts = run(source, scenario())
    assert tail.item_ids == ["10", "20", "30"] and unknown == SessionTail([], [])
    assert tail.timestamps[0] < tail.timestamps[-1]
    assert neighbours == [[("b", 3.0), ("d", 2.0)], []]
    assert counts == [[1.0, 3.0, 0.0], [0.0, 0.0, 0.0]]


def test_reads_asked_for_while_one_is_in_flight_go_together_and_each_caller_gets_its_own(
        monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[list[str]] = []
    release = asyncio.Event()

    async def read_sessions(client: Any, prefix: str, session_ids: list[str]) -> list[SessionTail]:
        sent.append(list(session_ids))
        await release.wait()
        return [SessionTail([f"{sid}-item"], [len(sid)]) for sid in session_ids]

    monkeypatch.setattr("streamrec.serve.sessions.read_sessions", read_sessions)
    source = SessionSource("redis://127.0.0.1:1", "p:", timeout_s=5.0)

    async def scenario() -> list[Any]:
        first = asyncio.ensure_future(source.session("a"))
        await asyncio.sleep(0)  # "a" is in flight, alone
        rest = [asyncio.ensure_future(source.session(sid, deadline)) for sid, deadline in
                (("bb", None), ("gone", 0.01), ("ccc", None))]
        with pytest.raises(TimeoutError):  # its caller's deadline passes while "a" is in flight
            await rest[1]
        release.set()
        return [await first, await rest[0], await rest[2]]

    answers = run(source, scenario())
    assert answers == [SessionTail(["a-item"], [1]), SessionTail(["bb-item"], [2]), SessionTail(["ccc-item"], [3])]
    assert sent == [["a"], ["bb", "ccc"]]  # the one whose caller gave up is not read


def test_a_failed_read_fails_every_caller_it_carried(closed_port: int) -> None:
    source = SessionSource(f"redis://127.0.0.1:{closed_port}", "p:", timeout_s=0.5, backoff_s=60.0)

    async def scenario() -> list[BaseException | SessionTail]:
        return await asyncio.gather(*(source.session(sid) for sid in ("a", "b", "c")), return_exceptions=True)

    assert [type(r) for r in run(source, scenario())] == [RedisUnavailable] * 3


@pytest.mark.integration
def test_concurrent_reads_share_round_trips_and_get_their_own_sessions(isolated: Settings,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from streamrec.serve import sessions

    ids = [f"s{i}" for i in range(12)]
    for i, sid in enumerate(ids):
        write_session(isolated, sid, [f"{sid}-{j}" for j in range(i + 1)])
    calls: list[int] = []
    real = sessions.read_sessions

    async def counted(client: Any, prefix: str, session_ids: list[str]) -> list[SessionTail]:
        calls.append(len(session_ids))
        return await real(client, prefix, session_ids)

    monkeypatch.setattr(sessions, "read_sessions", counted)
    source = SessionSource(isolated.redis_address, isolated.redis_prefix, timeout_s=5.0)

    async def scenario() -> list[SessionTail]:
        return list(await asyncio.gather(*(source.session(sid) for sid in [*ids, "unknown"])))

    tails = run(source, scenario())
    assert [t.item_ids for t in tails] == [[f"{sid}-{j}" for j in range(i + 1)] for i, sid in enumerate(ids)] + [[]]
    assert all(len(t.timestamps) == len(t.item_ids) for t in tails)
    assert sum(calls) == 13 and len(calls) < 13, calls  # the first alone, the rest together
