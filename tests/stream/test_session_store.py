"""SessionWriter against the real Redis: ordering, idempotence, trimming, counters."""

from __future__ import annotations

import asyncio
import math

import orjson
import pytest
import redis.asyncio as aioredis

from streamrec.settings import Settings
from streamrec.stream.processor import Record, SessionWriter
from streamrec.stream.session_store import cooc_key, pop_keys, read_session

pytestmark = pytest.mark.integration
T0 = 1_750_000_000_000


def records(rows: list[tuple[str, str, str, int]], start_offset: int = 0) -> list[Record]:
    """rows of (event_id, session_id, item_id, timestamp)."""
    return [Record("t", 0, start_offset + i, sid.encode(),
                   orjson.dumps({"event_id": eid, "session_id": sid, "item_id": item, "event_type": "view",
                                 "timestamp": ts}))
            for i, (eid, sid, item, ts) in enumerate(rows)]


async def session_items(settings: Settings, sid: str) -> list[str]:
    async with aioredis.Redis.from_url(settings.redis_address) as client:
        return [e.item_id for e in await read_session(client, settings.redis_prefix, sid)]


def test_order_idempotence_trimming_and_counters(isolated: Settings) -> None:
    settings = isolated.replace(session_max_len=4, cooc_window=2, popularity_half_life_s=1.0)

    async def scenario() -> None:
        async with SessionWriter(settings) as writer:
            first = await writer.apply(records([("a", "s", "A", T0), ("b", "s", "B", T0 + 10),
                                                ("c", "s", "C", T0 + 5)]), now_ms=T0)
            assert (first.applied, first.duplicates) == (3, 0)
            assert await session_items(settings, "s") == ["A", "C", "B"]  # placed by timestamp
            again = await writer.apply(records([("a", "s", "A", T0), ("c", "s", "C", T0 + 5)]), now_ms=T0)
            assert (again.applied, again.duplicates) == (0, 2)
            # equal timestamps keep Kafka order through the offset
            await writer.apply(records([("d", "s", "D", T0 + 20), ("e", "s", "E", T0 + 20)], start_offset=10), now_ms=T0)
            assert await session_items(settings, "s") == ["C", "B", "D", "E"]  # trimmed to the last 4
        async with aioredis.Redis.from_url(settings.redis_address, decode_responses=True) as client:
            decayed, landmark, count, events = pop_keys(settings.redis_prefix)
            assert int(await client.get(events)) == 5
            assert await client.zscore(count, "A") == 1
            # forward decay, half-life 1 s: an event 20 ms later weighs 2 ** 0.02 times more
            ratio = await client.zscore(decayed, "E") / await client.zscore(decayed, "A")
            assert math.isclose(ratio, 2 ** 0.02, rel_tol=1e-9)
            # co-occurrence pairs each new item with up to 2 items before it in time order
            assert await client.zscore(cooc_key(settings.redis_prefix, "B"), "A") == 1
            assert await client.zscore(cooc_key(settings.redis_prefix, "A"), "C") == 1
            assert await client.ttl(f"{settings.redis_prefix}sess:{{s}}:items") > 0

    asyncio.run(scenario())
