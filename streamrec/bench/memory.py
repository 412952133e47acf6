"""``streamrec bench memory``: Redis memory per session, as the worker writes it.

Protocol:
- A throwaway ``redis-server`` of the bench's own (a free loopback port, a temporary directory, no
  persistence, no memory cap), stopped at the end whatever happens: the project's Redis and its other
  users are never touched, and nothing else's keys count in the figures.
- Per shape (``sessions`` x ``events`` per session): FLUSHALL, ``used_memory`` after MEMORY PURGE,
  then the events written through ``SessionWriter`` (the worker's own writer, the worker's batch size,
  the settings from the environment: ``session_max_len``, ``session_dedup_ids``, ``cooc_window``...),
  then ``used_memory`` again. Events are interleaved across sessions, round by round, as a live stream
  brings them, one second apart within a session.
- ML-1M-like ids: session ``ml-1m-u<user>-s1`` and event ``ml-1m-<row>`` as the replay names them; items
  drawn from 3,700 title-like strings (about 35 bytes; the replay's own ids are ML-1M's numbers, 1 to 4
  bytes, so these figures err on the large side), skewed towards the first ones as popularity is.
- ``counters_bytes``: MEMORY USAGE (every element counted) of the ``{pop}`` keys and the ``cooc:*``
  keys, which are shared by all sessions. ``bytes_per_session`` is (after - before - counters_bytes) /
  sessions: both session keys with their TTLs, and their share of Redis's key tables.
- ``session_items_bytes`` / ``session_seen_bytes``: MEMORY USAGE of one session's ``:items`` and
  ``:seen`` keys (the first session's), with how many members each holds.
- The Lua scripts are loaded once before the first shape, so their cache does not count.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from tqdm import tqdm

from streamrec.errors import ConfigError
from streamrec.events.schema import encode_event
from streamrec.infra.processes import free_port
from streamrec.infra.redis_server import RedisServer
from streamrec.settings import Settings
from streamrec.stream.processor import Record, SessionWriter
from streamrec.stream.session_store import session_keys

__all__ = ["DEFAULT_SHAPES", "MemoryBenchConfig", "Shape", "format_memory", "run_memory_bench", "session_id",
           "shape_events"]

N_TITLES = 3700  # ML-1M has 3,706 rated movies


@dataclass(frozen=True)
class Shape:
    sessions: int
    events: int  # per session

    @classmethod
    def parse(cls, text: str) -> Shape:
        """``"5000x20"``: 5000 sessions of 20 events each (argparse's ``type``)."""
        sessions, sep, events = text.lower().partition("x")
        if not (sep and sessions.isdigit() and events.isdigit() and int(sessions) > 0 and int(events) > 0):
            raise ConfigError(f"a shape is SESSIONSxEVENTS with both positive, e.g. 5000x20; got {text!r}")
        return cls(int(sessions), int(events))

    def __str__(self) -> str:
        return f"{self.sessions}x{self.events}"


DEFAULT_SHAPES = (Shape(5000, 20), Shape(2000, 50), Shape(1000, 200))


@dataclass(frozen=True)
class MemoryBenchConfig:
    shapes: tuple[Shape, ...] = DEFAULT_SHAPES
    seed: int = 0
    progress: bool = True


def session_id(s: int) -> str:
    return f"ml-1m-u{s}-s1"


def _title(i: int) -> str:
    return f"Some Movie Title Number {i} (19{i % 100:02d})"


def shape_events(shape: Shape, *, start_ms: int, seed: int = 0) -> Iterator[dict[str, Any]]:
    """The stream of one shape: round ``j`` brings event ``j`` of every session, at ``start_ms + 1000 j``.
    Pure given its arguments."""
    rng = random.Random(seed)
    titles = [_title(i) for i in range(N_TITLES)]
    row = 0
    for j in range(shape.events):
        for s in range(shape.sessions):
            yield {"event_id": f"ml-1m-{row}", "session_id": session_id(s),
                   "item_id": titles[int(N_TITLES * rng.random() ** 2)], "event_type": "click",
                   "timestamp": start_ms + 1000 * j}
            row += 1


def _used_memory(client: redis.Redis) -> int:
    client.memory_purge()
    return int(client.info("memory")["used_memory"])


def _counters_bytes(client: redis.Redis, prefix: str) -> int:
    """MEMORY USAGE of the keys all sessions share: popularity (``{pop}``) and co-occurrence (``cooc:*``)."""
    pipe = client.pipeline(transaction=False)
    for pattern in (f"{prefix}{{pop}}*", f"{prefix}cooc:*"):
        for key in client.scan_iter(match=pattern, count=10_000):
            pipe.memory_usage(key, samples=0)
    return sum(int(n or 0) for n in pipe.execute())


async def _apply(writer: SessionWriter, batch: Sequence[Record], now_ms: int) -> None:
    result = await writer.apply(batch, now_ms=now_ms)
    if result.dead:
        first = result.dead[0]
        raise ConfigError(f"the writer refused {len(result.dead)} bench events, the first for {first.reason}: "
                          f"{first.detail} (check the STREAMREC_ event limits in the environment)")


async def _write(settings: Settings, shape: Shape, seed: int, progress: bool) -> None:
    now_ms = int(time.time() * 1000)
    total = shape.sessions * shape.events
    batch: list[Record] = []
    async with SessionWriter(settings) as writer:
        with tqdm(total=total, desc=str(shape), unit="ev", disable=not progress, dynamic_ncols=True) as bar:
            events = shape_events(shape, start_ms=now_ms - 1000 * shape.events - 60_000, seed=seed)
            for offset, event in enumerate(events):  # one partition, in the worker's batches
                batch.append(Record(settings.clicks_topic, 0, offset, event["session_id"].encode(),
                                    encode_event(event)))
                if len(batch) == settings.batch_max or offset + 1 == total:
                    await _apply(writer, batch, now_ms)
                    bar.update(len(batch))
                    batch = []


def _measure(client: redis.Redis, settings: Settings, shape: Shape, config: MemoryBenchConfig) -> dict[str, Any]:
    client.flushall()
    before = _used_memory(client)
    started = time.perf_counter()
    asyncio.run(_write(settings, shape, config.seed, config.progress))
    write_s = time.perf_counter() - started
    after = _used_memory(client)  # the writer and its connections are gone
    counters = _counters_bytes(client, settings.redis_prefix)
    items, seen = session_keys(settings.redis_prefix, session_id(0))
    return {
        "shape": str(shape),
        "sessions": shape.sessions,
        "events_per_session": shape.events,
        "events": shape.sessions * shape.events,
        "used_memory_before": before,
        "used_memory_after": after,
        "counters_bytes": counters,
        "bytes_per_session": (after - before - counters) / shape.sessions,
        "session_items_bytes": int(client.memory_usage(items, samples=0) or 0),
        "session_seen_bytes": int(client.memory_usage(seen, samples=0) or 0),
        "session_items_len": int(client.zcard(items)),
        "session_seen_ids": int(client.zcard(seen)),
        "write_s": round(write_s, 3),
    }


def _load_scripts(settings: Settings, client: redis.Redis) -> None:
    """One event through a writer, then FLUSHALL: the scripts stay cached and count in no shape."""
    event = {"event_id": "warm-up", "session_id": "warm-up", "item_id": "warm-up", "event_type": "click",
             "timestamp": int(time.time() * 1000)}

    async def write() -> None:
        async with SessionWriter(settings) as writer:
            await _apply(writer, [Record(settings.clicks_topic, 0, 0, b"warm-up", encode_event(event))],
                         event["timestamp"])

    asyncio.run(write())
    client.flushall()


def run_memory_bench(base: Settings, config: MemoryBenchConfig) -> dict[str, Any]:
    """Every shape on one throwaway redis-server; the figures of each, and the settings they depend on."""
    if not config.shapes:
        raise ConfigError("bench memory needs at least one shape")
    with tempfile.TemporaryDirectory(prefix="streamrec-bench-memory-") as home:
        settings = base.replace(home=Path(home), redis_host="127.0.0.1", redis_port=free_port(), redis_url="",
                                redis_cluster=False, redis_maxmemory_mb=0)
        server = RedisServer(settings, persistent=False)
        server.start()
        try:
            with redis.Redis.from_url(settings.redis_address) as client:
                version = str(client.info("server")["redis_version"])
                _load_scripts(settings, client)
                shapes = [_measure(client, settings, shape, config) for shape in config.shapes]
        finally:
            server.stop()
    return {
        "redis_version": version,
        "session_max_len": base.session_max_len,
        "session_dedup_ids": base.session_dedup_ids,
        "session_ttl_s": base.session_ttl_s,
        "cooc_window": base.cooc_window,
        "cooc_max_partners": base.cooc_max_partners,
        "counter_max_items": base.counter_max_items,
        "batch_max": base.batch_max,
        "item_ids": N_TITLES,
        "shapes": shapes,
    }


def format_memory(report: dict[str, Any]) -> str:
    head = (f"{'shape':>10} {'events':>9} {'B/session':>10} {'counters MB':>11} {'items key B':>11} "
            f"{'seen key B':>10} {'items':>5} {'seen':>5} {'write s':>8}")
    lines = [
        (f"Redis {report['redis_version']}, memory per session written by SessionWriter: session_max_len "
         f"{report['session_max_len']}, session_dedup_ids {report['session_dedup_ids']}, cooc_window "
         f"{report['cooc_window']}, cooc_max_partners {report['cooc_max_partners']}, {report['item_ids']:,} item ids"),
        head,
        "-" * len(head),
    ]
    rows: Sequence[dict[str, Any]] = report["shapes"]
    for r in rows:
        lines.append(f"{r['shape']:>10} {r['events']:>9,} {r['bytes_per_session']:>10,.0f} "
                     f"{r['counters_bytes'] / 1e6:>11.2f} {r['session_items_bytes']:>11,} "
                     f"{r['session_seen_bytes']:>10,} {r['session_items_len']:>5} {r['session_seen_ids']:>5} "
                     f"{r['write_s']:>8.1f}")
    lines.append("B/session: used_memory after - before (MEMORY PURGE) less the counters, per session; "
                 "items/seen key B: MEMORY USAGE of one session's keys, with their members")
    return "\n".join(lines)
