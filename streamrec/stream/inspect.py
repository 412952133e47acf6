"""Read-only views of live state for people: sessions in Redis, dead letters in Kafka."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from streamrec.kafka_security import kafka_python_kwargs
from streamrec.redis_access import async_client
from streamrec.settings import Settings
from streamrec.stream.escape import escape_text
from streamrec.stream.processor import counters_key
from streamrec.stream.session_store import SessionEvent, read_session

__all__ = ["consumer_lag", "format_dead_letter", "format_session", "group_assignment", "list_sessions", "show_sessions",
           "tail_dead_letters", "wait_for_lag"]


def format_session(session_id: str, events: list[SessionEvent], ttl_s: int | None = None, last: int = 8) -> str:
    if not events:
        return f"{escape_text(session_id)}: (unknown or expired)"
    when = datetime.fromtimestamp(events[-1].timestamp / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    head = f"{escape_text(session_id)}: {len(events)} event(s), last at {when} UTC"
    head += f", expires in {ttl_s}s" if ttl_s else ""
    shown = events[-last:]
    lines = [f"  {'…' if len(events) > last else ' '}"] if len(events) > last else []
    lines += [f"   {escape_text(e.event_type):12} {escape_text(e.item_id)}" for e in shown]
    return "\n".join([head, *lines])


def _as_json(session_id: str, events: list[SessionEvent]) -> dict[str, Any]:
    return {"session_id": session_id,
            "events": [{"item_id": e.item_id, "event_type": e.event_type, "timestamp": e.timestamp} for e in events]}


async def show_sessions(settings: Settings, session_ids: list[str], as_json: bool = False) -> str:
    async with async_client(settings.redis_address, cluster=settings.redis_is_cluster) as client:
        out = []
        for sid in session_ids:
            events = await read_session(client, settings.redis_prefix, sid)
            out.append(_as_json(sid, events) if as_json else format_session(sid, events))
    return json.dumps(out, indent=2) if as_json else "\n".join(out)  # type: ignore[arg-type]


async def list_sessions(settings: Settings, limit: int, as_json: bool = False) -> str:
    prefix = settings.redis_prefix
    head, tail = f"{prefix}sess:{{", "}:items"
    async with async_client(settings.redis_address, cluster=settings.redis_is_cluster, decode_responses=True) as client:
        ids: list[str] = []
        async for key in client.scan_iter(match=f"{prefix}sess:*:items", count=1000):
            if key.startswith(head) and key.endswith(tail):
                ids.append(key[len(head):-len(tail)])
            if len(ids) >= limit:
                break
        if not ids:
            return "[]" if as_json else "no live sessions in Redis"
    return await show_sessions(settings, sorted(ids), as_json)


def tail_dead_letters(settings: Settings, n: int, timeout_s: float = 5.0) -> list[dict[str, Any]]:
    """The last ``n`` dead letters over all partitions, oldest first by failure time."""
    consumer = KafkaConsumer(**kafka_python_kwargs(settings.kafka_access), enable_auto_commit=False,
                             consumer_timeout_ms=int(timeout_s * 1000), client_id="streamrec-dlq-tail")
    try:
        parts = consumer.partitions_for_topic(settings.dead_letter_topic) or set()
        tps = [TopicPartition(settings.dead_letter_topic, p) for p in sorted(parts)]
        if not tps:
            return []
        consumer.assign(tps)
        ends = consumer.end_offsets(tps)
        begins = consumer.beginning_offsets(tps)
        for tp in tps:
            consumer.seek(tp, max(begins[tp], ends[tp] - n))
        remaining = {tp for tp in tps if consumer.position(tp) < ends[tp]}
        letters = []
        for message in consumer:
            letters.append(orjson.loads(message.value))
            tp = TopicPartition(message.topic, message.partition)
            if message.offset + 1 >= ends[tp]:
                remaining.discard(tp)
            if not remaining:
                break
    finally:
        consumer.close()
    letters.sort(key=lambda d: d.get("failed_at_ms", 0))
    return letters[-n:]


def format_dead_letter(letter: dict[str, Any]) -> str:
    """One line per dead letter for a terminal: reason, detail, key and where the record was. Every
    text in it came from the refused record, so all of it is escaped."""
    source = letter.get("source") or {}
    where = f"@{source.get('partition')}:{source.get('offset')}"
    key = letter.get("key")
    cut = " (payload cut)" if letter.get("truncated") else ""
    return (f"{escape_text(str(letter.get('reason'))):18} {escape_text(str(letter.get('detail')), 70):71} "
            f"key={escape_text(key, 40) if key is not None else '(none)'} {where}{cut}")


def consumer_lag(settings: Settings) -> dict[int, int]:
    """Per partition of the clicks topic: messages not yet committed by the worker group."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**kafka_python_kwargs(settings.kafka_access), client_id="streamrec-lag")
    consumer = KafkaConsumer(**kafka_python_kwargs(settings.kafka_access), client_id="streamrec-lag",
                             enable_auto_commit=False)
    try:
        parts = consumer.partitions_for_topic(settings.clicks_topic) or set()
        tps = [TopicPartition(settings.clicks_topic, p) for p in sorted(parts)]
        ends = consumer.end_offsets(tps)
        committed = admin.list_group_offsets({settings.app_id: tps}).get(settings.app_id, {})
        return {tp.partition: ends[tp] - max(_offset(committed.get(tp)), 0) for tp in tps}
    finally:
        consumer.close()
        admin.close()


def wait_for_lag(settings: Settings, timeout_s: float, poll_s: float = 0.5) -> int:
    """Wait up to ``timeout_s`` for the worker group to catch up with the clicks topic; the lag left."""
    deadline = time.monotonic() + timeout_s
    while (lag := sum(consumer_lag(settings).values())) and time.monotonic() < deadline:
        time.sleep(poll_s)
    return lag


def _faust_metadata_filter(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Unable to decode member_metadata")


def group_assignment(settings: Settings) -> tuple[str, list[list[int]]]:
    """The worker group's state (``Stable``, ``PreparingRebalance``...) and, per member, the
    partitions of the clicks topic it owns: how a rebalance is watched from outside."""
    from kafka import KafkaAdminClient

    # kafka-python warns on every member of a Faust group: its subscription carries Faust's own data
    logging.getLogger("kafka.admin._groups").addFilter(_faust_metadata_filter)
    admin = KafkaAdminClient(**kafka_python_kwargs(settings.kafka_access), client_id="streamrec-group")
    try:
        group = admin.describe_groups([settings.app_id])[settings.app_id]
    finally:
        admin.close()
    members = []
    for member in group.get("members") or []:
        assignment = member.get("member_assignment") or {}
        owned = [p for tp in (assignment.get("assigned_partitions") if isinstance(assignment, dict) else None) or []
                 if tp["topic"] == settings.clicks_topic for p in tp["partitions"]]
        members.append(sorted(owned))
    return str(group.get("group_state")), members


def _offset(meta: Any) -> int:
    return -1 if meta is None else int(getattr(meta, "offset", meta))


async def stats(settings: Settings, top: int = 10) -> dict[str, Any]:
    """Counters the worker keeps: events applied, live sessions, most popular items now; once it has met
    bad records or failures, also ``dead_letters_sent``, ``dead_letters_lost`` and ``batch_retries``."""
    from streamrec.stream.session_store import pop_keys

    decayed, _, count, events = pop_keys(settings.redis_prefix)
    async with async_client(settings.redis_address, cluster=settings.redis_is_cluster, decode_responses=True) as client:
        sessions = 0
        async for _ in client.scan_iter(match=f"{settings.redis_prefix}sess:*:items", count=5000):
            sessions += 1
        return {
            "events_applied": int(await client.get(events) or 0),
            "live_sessions": sessions,
            "popular_now": [item for item, _ in await client.zrevrange(decayed, 0, top - 1, withscores=True)],
            "popular_all_time": [(item, int(n)) for item, n in await client.zrevrange(count, 0, top - 1, withscores=True)],
            **{name: int(n) for name, n in (await client.hgetall(counters_key(settings.redis_prefix))).items()},
        }
