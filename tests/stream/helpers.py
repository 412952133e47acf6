"""Helpers for the stream integration tests: publish, wait, read back."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterable, Mapping
from typing import Any

import redis
import redis.asyncio as aioredis

from streamrec.events.schema import encode_event
from streamrec.publish.producer import EventProducer
from streamrec.settings import Settings
from streamrec.stream.session_store import pop_keys, read_session
from streamrec.stream.topics import ensure_topics


def make_events(n: int, sessions: int, seed: int = 0, out_of_order_every: int = 0,
                start_ms: int | None = None) -> list[dict[str, Any]]:
    """``n`` events over ``sessions`` sessions, mostly in time order; every
    ``out_of_order_every``-th event is stamped earlier than the ones before it."""
    rng = random.Random(seed)
    start = start_ms if start_ms is not None else int(time.time() * 1000) - 600_000
    events = []
    for i in range(n):
        ts = start + i * 10
        if out_of_order_every and i % out_of_order_every == out_of_order_every - 1:
            ts -= rng.randint(50, 5000)
        events.append({"event_id": f"e{seed}-{i}", "session_id": f"s{seed}-{rng.randrange(sessions)}",
                       "user_id": None, "item_id": f"item-{int(200 * rng.random() ** 2)}",
                       "event_type": rng.choice(["view", "click", "add_to_cart", "purchase"]), "timestamp": ts})
    return events


def publish(settings: Settings, events: Iterable[Mapping[str, Any] | tuple[bytes | None, bytes]],
            rate: float = 0.0) -> int:
    """Publish dict events (keyed by session) or raw ``(key, payload)`` pairs; returns how many."""
    ensure_topics(settings)
    n = 0
    gap = 1.0 / rate if rate else 0.0
    with EventProducer(settings) as producer:
        for event in events:
            if isinstance(event, tuple):
                producer.send(event[1], event[0])
            else:
                producer.send(encode_event(dict(event)), str(event["session_id"]).encode())
            n += 1
            if gap:
                time.sleep(gap)
        stats = producer.close()
    assert stats.failed == 0, stats.errors
    return n


def applied(settings: Settings) -> int:
    with redis.Redis.from_url(settings.redis_address) as client:
        return int(client.get(pop_keys(settings.redis_prefix)[3]) or 0)


def wait_applied(settings: Settings, n: int, timeout_s: float = 90.0) -> int:
    """Wait until ``n`` distinct events were applied; returns the final count."""
    deadline = time.monotonic() + timeout_s
    count = applied(settings)
    while count < n and time.monotonic() < deadline:
        time.sleep(0.1)
        count = applied(settings)
    time.sleep(0.3)  # anything beyond n (a duplicate applied twice) would show up now
    return applied(settings)


def read_sessions(settings: Settings, session_ids: Iterable[str]) -> dict[str, list[str]]:
    async def read() -> dict[str, list[str]]:
        async with aioredis.Redis.from_url(settings.redis_address) as client:
            return {sid: [e.item_id for e in await read_session(client, settings.redis_prefix, sid)]
                    for sid in session_ids}

    return asyncio.run(read())
