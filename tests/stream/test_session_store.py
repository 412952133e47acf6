"""SessionWriter against the real Redis: ordering, idempotence, trimming, counters."""

from __future__ import annotations

import asyncio
import math
import random

import orjson
import pytest
import redis.asyncio as aioredis

from streamrec.settings import Settings
from streamrec.stream.processor import Record, SessionWriter
from streamrec.stream.session_store import cooc_key, offsets_key, pop_keys, read_session, session_keys

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


def random_records(n: int, start_offset: int, endless: str, seed: int) -> list[Record]:
    """``n`` events with new random item ids: every third to one session that never ends, the others
    to new sessions of one to three events."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        sid = endless if i % 3 == 0 else f"r{seed}-{i // rng.randint(1, 3)}"
        rows.append((f"x{seed}-{i}", sid, f"new-{rng.getrandbits(48):012x}", T0 + i))
    return records(rows, start_offset)


def test_every_key_family_stays_bounded_under_random_items_and_an_endless_session(isolated: Settings) -> None:
    settings = isolated.replace(session_max_len=5, session_dedup_ids=4, counter_max_items=40, cooc_max_partners=3, cooc_window=3,
                                cooc_ttl_s=3600)
    prefix = settings.redis_prefix

    async def scenario() -> None:
        async with SessionWriter(settings) as writer:
            for b in range(6):
                await writer.apply(random_records(300, 300 * b, "endless", seed=b), now_ms=T0)
        async with aioredis.Redis.from_url(settings.redis_address, decode_responses=True) as client:
            decayed, landmark, count, events = pop_keys(prefix)
            assert int(await client.get(events)) == 1800
            assert await client.zcard(count) == 40 and await client.zcard(decayed) == 40
            items, seen = session_keys(prefix, "endless")
            assert await client.zcard(items) == 5 and await client.zcard(seen) == 4
            cooc = [k async for k in client.scan_iter(match=f"{prefix}cooc:*", count=1000)]
            assert 0 < len(cooc) <= 2 * 40, len(cooc)  # an item leaving the counts takes its key along
            bounded_forever = {decayed, landmark, count, events, offsets_key(prefix)}
            async for key in client.scan_iter(match=f"{prefix}*", count=1000):
                ttl = await client.ttl(key)
                if key.startswith(f"{prefix}cooc:"):
                    assert await client.zcard(key) <= 3 and 0 < ttl <= 3600, key
                elif key not in bounded_forever:
                    assert 0 < ttl <= settings.session_ttl_s, f"{key} has no TTL"

    asyncio.run(scenario())


def test_a_replay_after_the_sessions_expired_counts_nothing_twice(isolated: Settings) -> None:
    prefix = isolated.redis_prefix
    batch = records([(f"e{i}", f"s{i % 4}", f"I{i % 7}", T0 + i) for i in range(40)])

    async def state(client: aioredis.Redis) -> tuple[object, ...]:
        decayed, _, count, events = pop_keys(prefix)
        return (await client.zrange(count, 0, -1, withscores=True), await client.zrange(decayed, 0, -1, withscores=True),
                await client.get(events), await client.zrange(cooc_key(prefix, "I3"), 0, -1, withscores=True))

    async def scenario() -> None:
        async with SessionWriter(isolated) as writer:
            assert (await writer.apply(batch, now_ms=T0)).applied == 40
        async with aioredis.Redis.from_url(isolated.redis_address) as client:
            once = await state(client)
            await client.delete(*[k for s in range(4) for k in session_keys(prefix, f"s{s}")])  # the idle TTL passed
            async with SessionWriter(isolated) as writer:  # a new worker, replaying the partition from the start
                replay = await writer.apply(batch, now_ms=T0)
            assert (replay.applied, replay.duplicates) == (0, 40)
            assert await state(client) == once

    asyncio.run(scenario())


def test_a_redis_error_on_one_session_fails_that_session_alone(isolated: Settings) -> None:
    prefix = isolated.redis_prefix
    batch = records([(f"e{i}", f"s{i % 5}", f"I{i % 3}", T0 + i) for i in range(50)])

    async def scenario() -> None:
        async with aioredis.Redis.from_url(isolated.redis_address, decode_responses=True) as client:
            await client.set(session_keys(prefix, "s2")[0], "not a sorted set")  # WRONGTYPE for s2's script
            async with SessionWriter(isolated) as writer:
                result = await writer.apply(batch, now_ms=T0)
                assert result.applied == 40
                assert {d.reason for d in result.dead} == {"redis_error"}
                assert sorted(d.record.offset for d in result.dead) == [i for i in range(50) if i % 5 == 2]
                assert "WRONGTYPE" in result.dead[0].detail
                again = await writer.apply(batch, now_ms=T0)  # redelivered: nothing applied twice
                assert (again.applied, again.duplicates, again.dead) == (0, 50, [])  # s2 went to the dead letters
            for s in (0, 1, 3, 4):
                assert await session_items(isolated, f"s{s}") == [f"I{i % 3}" for i in range(50) if i % 5 == s]
            assert int(await client.get(pop_keys(prefix)[3])) == 40
            assert await client.get(session_keys(prefix, "s2")[0]) == "not a sorted set"

    asyncio.run(scenario())
