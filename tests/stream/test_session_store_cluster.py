"""SessionWriter and the server's SessionSource on a real Redis Cluster: the same state as on one node."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import orjson
import pytest
from redis.asyncio.cluster import RedisCluster

from streamrec.infra.redis_cluster import LocalRedisCluster
from streamrec.redis_access import AsyncRedis, async_client
from streamrec.serve.sessions import SessionSource
from streamrec.settings import Settings
from streamrec.stream.processor import Record, SessionWriter
from streamrec.stream.session_store import SessionTail, cooc_key, pop_keys, read_session, session_keys
from tests.stream.helpers import make_events

pytestmark = pytest.mark.integration


def as_records(events: list[dict[str, Any]]) -> list[Record]:
    return [Record("t", i % 6, i, str(e["session_id"]).encode(), orjson.dumps(e)) for i, e in enumerate(events)]


async def state(client: AsyncRedis, prefix: str, sessions: set[str], items: set[str]) -> dict[str, Any]:
    """Everything the worker writes: sessions, both popularities with the landmark, co-occurrence."""
    decayed, landmark, count, events = pop_keys(prefix)
    return {
        "sessions": {sid: await read_session(client, prefix, sid) for sid in sorted(sessions)},
        "decayed": await client.zrange(decayed, 0, -1, withscores=True),
        "landmark": await client.get(landmark),
        "count": await client.zrange(count, 0, -1, withscores=True),
        "events": await client.get(events),
        "cooc": {item: await client.zrange(cooc_key(prefix, item), 0, -1, withscores=True) for item in sorted(items)},
    }


async def write_all(settings: Settings, batches: list[list[Record]]) -> tuple[int, int]:
    applied = duplicates = 0
    async with SessionWriter(settings) as writer:
        for batch in batches:
            result = await writer.apply(batch)
            applied, duplicates = applied + result.applied, duplicates + result.duplicates
    return applied, duplicates


def test_cluster_writes_and_reads_match_one_node_exactly(isolated: Settings, redis_cluster: LocalRedisCluster) -> None:
    one_node = isolated.replace(cooc_window=3, session_max_len=20, popularity_half_life_s=60.0)
    cluster = one_node.replace(redis_url=redis_cluster.url)
    assert cluster.redis_is_cluster and not one_node.redis_is_cluster
    events = make_events(3000, sessions=300, seed=7, out_of_order_every=9)
    # the last 100 events published again (new offsets, same event ids: a producer's retry)
    records = as_records(events + events[-100:])
    # batches as Kafka hands them over, then three of them redelivered (a crash before the commit)
    batches = [records[i:i + 250] for i in range(0, len(records), 250)]
    batches += batches[3:6]
    sessions = {str(e["session_id"]) for e in events}
    items = {str(e["item_id"]) for e in events}

    async def scenario() -> None:
        assert await write_all(one_node, batches) == (3000, 850)
        assert await write_all(cluster, batches) == (3000, 850)
        async with async_client(one_node.redis_address, cluster=False, decode_responses=True) as client:
            expected = await state(client, one_node.redis_prefix, sessions, items)
        async with async_client(cluster.redis_address, cluster=True, decode_responses=True) as client:
            assert isinstance(client, RedisCluster)
            got = await state(client, cluster.redis_prefix, sessions, items)
            per_node = [await client.dbsize(target_nodes=node) for node in client.get_primaries()]
        assert len(per_node) == 3 and min(per_node) > 0, per_node  # the keys really are spread out
        assert got == expected  # floats included: the same increments in the same order
        assert dict(Counter(str(e["item_id"]) for e in events)) == {i: int(n) for i, n in got["count"]}
        assert int(got["events"]) == 3000
        assert sum(len(v) for v in got["sessions"].values()) == sum(min(20, n) for n in
                                                                   Counter(str(e["session_id"]) for e in events).values())
        assert sum(n for rows in got["cooc"].values() for _, n in rows) > 0

        # the server's reads, through the same SessionSource it uses
        source = SessionSource(cluster.redis_address, cluster.redis_prefix, timeout_s=2.0, cluster=True)
        try:
            wanted = sorted(sessions)[:50]
            alone = [await source.session(sid) for sid in wanted]
            together = await asyncio.gather(*(source.session(sid) for sid in wanted))  # pipelines across slots
            for sid, tail, same in zip(wanted, alone, together, strict=True):
                stored = expected["sessions"][sid]
                assert tail == same == SessionTail([e.item_id for e in stored], [e.timestamp for e in stored])
            assert await source.recent_popular() == [item for item, _ in sorted(
                expected["decayed"], key=lambda row: row[1], reverse=True)][:source.popular_n]
        finally:
            await source.close()

    asyncio.run(scenario())


def test_on_the_cluster_a_bad_session_fails_alone(isolated: Settings, redis_cluster: LocalRedisCluster) -> None:
    """Ids that would break hash tags are refused; a session whose key Redis refuses (WRONGTYPE) is sent
    to the dead letters; every other session of the batch is applied exactly once."""
    settings = isolated.replace(redis_url=redis_cluster.url)
    prefix = settings.redis_prefix
    sids = ["}x", "hot}1", "hot}2", "broken", *[f"ok{i}" for i in range(12)]]
    events = [{"event_id": f"e{i}", "session_id": sids[i % len(sids)], "user_id": None, "item_id": f"I{i % 9}",
               "event_type": "view", "timestamp": 1_750_000_000_000 + i} for i in range(160)]
    batch = as_records(events)

    async def scenario() -> None:
        async with async_client(settings.redis_address, cluster=True, decode_responses=True) as client:
            await client.set(session_keys(prefix, "broken")[0], "not a sorted set")
            async with SessionWriter(settings) as writer:
                first = await writer.apply(batch)
                again = await writer.apply(batch)  # redelivered
            assert (first.applied, again.applied, again.duplicates) == (120, 0, 120)
            reasons = Counter((str(orjson.loads(d.record.value)["session_id"]), d.reason) for d in first.dead)
            assert reasons == {("}x", "bad_id"): 10, ("hot}1", "bad_id"): 10, ("hot}2", "bad_id"): 10,
                               ("broken", "redis_error"): 10}, reasons
            assert len(again.dead) == 40  # the dead-letter topic is at-least-once, as the clicks are
            for sid in sids[4:]:
                assert [e.item_id for e in await read_session(client, prefix, sid)] == [
                    str(e["item_id"]) for e in events if e["session_id"] == sid]
            assert int(await client.get(pop_keys(prefix)[3])) == 120

    asyncio.run(scenario())
