"""``streamrec bench session-reads``: what reading a session costs the server, in its process and in Redis.

Every ``Recommend`` reads its session from Redis (``streamrec.serve.sessions``). Two ways are timed
on the same stored sessions, in turn, at each concurrency (reads in flight):

- ``pipelined``: the server's own ``SessionSource``. One read is in flight; the reads asked for
  meanwhile go together as one pipeline; RESP2; a session decoded as two lists (``SessionTail``);
- ``one per read``: each read its own round trip, as the server read them before: ``read_session``
  (a ZRANGE over redis-py's default RESP3, an object per event) under ``asyncio.wait_for``.

The CPU is this process's own (``time.process_time``: it runs nothing else meanwhile) and Redis's
(``used_cpu_sys`` + ``used_cpu_user`` of ``INFO cpu``), each per read, the median over ``repeats``.
Before timing, both ways must read the same items and times for every session.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from streamrec.errors import ConfigError
from streamrec.settings import Settings

__all__ = ["WAYS", "SessionReadsConfig", "format_session_reads", "run_session_reads"]

WAYS = ("pipelined", "one per read")


@dataclass(frozen=True)
class SessionReadsConfig:
    sessions: int = 2000
    max_len: int = 50  # events per session, the tails of real ML-1M users
    reads: int = 6000  # per way, concurrency and repeat
    concurrency: tuple[int, ...] = (1, 16)
    repeats: int = 3
    dataset: str = "ml-1m"
    load_sessions: bool = True  # False: the sessions `bench serve` stored (bench:sess-N) are read as they are

    def __post_init__(self) -> None:
        if self.sessions < 1 or self.reads < 1 or self.repeats < 1 or not self.concurrency or min(self.concurrency) < 1:
            raise ConfigError(f"session-reads needs sessions, reads, repeats and every concurrency >= 1, got {self}")


def _redis_cpu_s(settings: Settings) -> float:
    import redis

    with redis.Redis.from_url(settings.redis_address) as client:
        info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def _way(settings: Settings, way: str) -> tuple[Callable[[str], Awaitable[tuple[list[str], list[int]]]],
                                                       Callable[[], Awaitable[None]], Callable[[], int]]:
    """``read(session_id) -> (item ids, timestamps)``, ``close()`` and ``round_trips()`` for ``way``."""
    from streamrec.redis_access import async_client
    from streamrec.serve.sessions import SessionSource
    from streamrec.stream.session_store import read_session

    if way == "pipelined":
        source = SessionSource(settings.redis_address, settings.redis_prefix, timeout_s=2.0,
                               cluster=settings.redis_is_cluster)

        async def pipelined(sid: str) -> tuple[list[str], list[int]]:
            tail = await source.session(sid)
            return tail.item_ids, tail.timestamps

        return pipelined, source.close, lambda: source.round_trips
    client = async_client(settings.redis_address, cluster=settings.redis_is_cluster)
    trips = [0]

    async def one(sid: str) -> tuple[list[str], list[int]]:
        trips[0] += 1
        events = await asyncio.wait_for(read_session(client, settings.redis_prefix, sid), 2.0)
        return [e.item_id for e in events], [e.timestamp for e in events]

    return one, client.aclose, lambda: trips[0]


async def _check_same(settings: Settings, ids: Sequence[str]) -> None:
    answers = []
    for way in WAYS:
        read, close, _ = await _way(settings, way)
        try:
            answers.append([await read(sid) for sid in ids])
        finally:
            await close()
    if answers[0] != answers[1]:
        raise RuntimeError("the pipelined reads and the one-per-read reads gave different sessions")
    if not any(items for items, _ in answers[0]):
        raise ConfigError(f"the {len(ids)} sessions read are all empty; store some (drop --no-load)")


async def _timed(settings: Settings, ids: Sequence[str], way: str, concurrency: int, reads: int) -> dict[str, float]:
    read, close, round_trips = await _way(settings, way)
    per_worker = max(1, reads // concurrency)

    async def worker(w: int) -> None:
        for i in range(per_worker):
            await read(ids[(w * per_worker + i) % len(ids)])

    try:
        await worker(0)  # connections opened, caches warm
        trips, redis_before = round_trips(), _redis_cpu_s(settings)
        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        redis_cpu, trips = _redis_cpu_s(settings) - redis_before, round_trips() - trips
    finally:
        await close()
    n = per_worker * concurrency
    return {"cpu_us_per_read": cpu / n * 1e6, "redis_cpu_us_per_read": redis_cpu / n * 1e6,
            "wall_us_per_read": wall / n * 1e6, "reads_per_round_trip": n / max(trips, 1)}


def run_session_reads(settings: Settings, config: SessionReadsConfig = SessionReadsConfig(),
                      ids: Sequence[str] | None = None) -> dict[str, Any]:
    """The figures of each way at each concurrency (medians over ``repeats``, the ways taken in turn).
    ``ids``: sessions already stored (tests); else they are stored as ``bench serve`` stores them."""
    from streamrec.bench.serve import SESSION_PREFIX, ServeBenchConfig, store_sessions

    try:
        import uvloop
        run = uvloop.run
    except ImportError:  # the server runs on uvloop when it is installed, so the bench does too
        run = asyncio.run
    if ids is None:
        ids = (store_sessions(settings, ServeBenchConfig(sessions=config.sessions, max_len=config.max_len,
                                                         dataset=config.dataset))
               if config.load_sessions else [f"{SESSION_PREFIX}{i}" for i in range(config.sessions)])
    run(_check_same(settings, ids[:50]))
    samples: dict[tuple[str, int], list[dict[str, float]]] = {}
    for _ in range(config.repeats):
        for concurrency in config.concurrency:
            for way in WAYS:
                samples.setdefault((way, concurrency), []).append(
                    run(_timed(settings, ids, way, concurrency, config.reads)))
    rows = [{"way": way, "concurrency": c, "reads": config.reads, "repeats": config.repeats,
             **{k: round(statistics.median(s[k] for s in runs), 2) for k in runs[0]}}
            for (way, c), runs in samples.items()]
    return {"sessions": len(ids), "max_len": config.max_len, "rows": rows}


def format_session_reads(report: dict[str, Any]) -> str:
    head = f"{'way':14} {'in flight':>9} {'CPU µs/read':>12} {'Redis µs/read':>14} {'wall µs/read':>13} {'reads/trip':>11}"
    title = (f"{report['sessions']} sessions of up to {report['max_len']} events; medians of "
             f"{report['rows'][0]['repeats']} runs")
    lines = [title, head, "-" * len(head)]
    lines += [f"{r['way']:14} {r['concurrency']:>9} {r['cpu_us_per_read']:>12.1f} {r['redis_cpu_us_per_read']:>14.1f} "
              f"{r['wall_us_per_read']:>13.1f} {r['reads_per_round_trip']:>11.1f}" for r in report["rows"]]
    return "\n".join(lines)
