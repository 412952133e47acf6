"""What the worker does with one batch of Kafka records; Faust-free, so tests call it directly.

A batch goes: parse and validate -> dead letters for the bad ones -> one atomic script call
that appends to every session of the batch and updates popularity and co-occurrence (on a Redis
Cluster: a script per session, then the counters; see ``streamrec.stream.session_store``).
Offsets are committed by the caller only after ``apply`` returns, so a crash anywhere here
means redelivery, and redelivery is harmless because the script skips event ids already seen.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, TypeVar

import orjson
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamrec.errors import InvalidEvent
from streamrec.events.ids import key_names
from streamrec.events.schema import ClickEvent, EventLimits, parse_event
from streamrec.redis_access import AsyncRedis, async_client
from streamrec.settings import Settings
from streamrec.stream.escape import escape_text
from streamrec.stream.session_store import (
    APPLY_LUA,
    FIELD,
    POP_LUA,
    SESSION_LUA,
    cooc_key,
    half_life_to_tau_ms,
    pack,
    pop_keys,
    session_keys,
)

__all__ = ["BatchResult", "CountingWriter", "DeadLetter", "DeadLetterMessage", "Record", "SessionWriter",
           "counters_key", "limits_from", "validate"]

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Record:
    """The parts of a Kafka record the processor needs."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


# What a dead letter keeps of the refused record's key and of the reason's detail; the payload's share
# is a setting (``dead_letter_payload_bytes``). Together they bound a dead letter's size, so that it
# always fits the dead-letter topic (``Settings.validate`` checks the sum).
DEAD_LETTER_KEY_BYTES: Final = 1024
DEAD_LETTER_DETAIL_CHARS: Final = 1000
HEADER_PREFIX: Final = "streamrec.error."


@dataclass(frozen=True, slots=True)
class DeadLetterMessage:
    key: bytes | None
    value: bytes
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    reason: str
    detail: str

    def encode(self, now_ms: int, max_payload_bytes: int) -> DeadLetterMessage:
        """The message for the dead-letter topic: a JSON body, and the error context again in headers,
        as Kafka Connect's dead-letter queue puts it, for tools that route on headers without parsing.

        The record's bytes are kept once, base64-encoded, and only their first ``max_payload_bytes``:
        a refused record can be as large as the topic allows, and a dead letter must stay sendable.
        ``truncated`` says when they were cut; ``payload_bytes`` is the original size.
        """
        raw = self.record.value or b""
        kept = raw[:max_payload_bytes]
        key = self.record.key[:DEAD_LETTER_KEY_BYTES] if self.record.key is not None else None
        detail = self.detail[:DEAD_LETTER_DETAIL_CHARS]
        source = self.record
        body = orjson.dumps({
            "reason": self.reason,
            "detail": detail,
            "source": {"topic": source.topic, "partition": source.partition, "offset": source.offset},
            "key": key.decode("utf-8", "replace") if key is not None else None,
            "payload_b64": base64.b64encode(kept).decode(),
            "payload_bytes": len(raw),
            "truncated": len(kept) < len(raw),
            "failed_at_ms": now_ms,
        })
        context = {"reason": self.reason, "detail": detail, "topic": source.topic, "partition": source.partition,
                   "offset": source.offset, "failed_at_ms": now_ms, "truncated": str(len(kept) < len(raw)).lower()}
        headers = [(HEADER_PREFIX + name, str(value).encode("utf-8", "replace")) for name, value in context.items()]
        return DeadLetterMessage(key, body, headers)


@dataclass
class BatchResult:
    applied: int = 0
    duplicates: int = 0
    dead: list[DeadLetter] = field(default_factory=list)


def limits_from(settings: Settings) -> EventLimits:
    return EventLimits(settings.max_event_bytes, settings.max_id_len, settings.min_timestamp_ms,
                       settings.max_future_skew_s * 1000)


def validate(records: Sequence[Record], limits: EventLimits, now_ms: int) -> tuple[list[tuple[Record, ClickEvent]], list[DeadLetter]]:
    """Split a batch into valid events and dead letters. Pure."""
    good: list[tuple[Record, ClickEvent]] = []
    dead: list[DeadLetter] = []
    for record in records:
        if record.value is None:
            dead.append(DeadLetter(record, "empty_payload", "record has no value"))
            continue
        try:
            event = parse_event(record.value, limits, now_ms)
        except InvalidEvent as exc:
            dead.append(DeadLetter(record, exc.reason, exc.detail))
            continue
        if record.key is None:
            dead.append(DeadLetter(record, "missing_key",
                                   "the record has no Kafka key; it must be the session_id, so that a session "
                                   "stays on one partition, in order"))
            continue
        if not key_names(record.key, event.session_id):
            dead.append(DeadLetter(record, "key_mismatch",
                                   "the Kafka key must be the session_id, so that a session stays on one partition"))
            continue
        good.append((record, event))
    return good, dead


def group_by_session(events: Sequence[tuple[Record, ClickEvent]]) -> dict[str, list[tuple[Record, ClickEvent]]]:
    grouped: dict[str, list[tuple[Record, ClickEvent]]] = defaultdict(list)
    for record, event in events:
        grouped[event.session_id].append((record, event))
    return grouped


def counters_key(prefix: str) -> str:
    """The worker's own counters (a hash): dead letters sent and lost, batches retried; ``streamrec stats``."""
    return f"{prefix}worker:counters"


async def _add_counts(client: AsyncRedis, key: str, counts: Mapping[str, int]) -> None:
    """Add to the worker's counters, if Redis takes it: they inform, and must never fail a settled batch."""
    try:
        pipe = client.pipeline(transaction=False)
        for name, n in counts.items():
            if n:
                pipe.hincrby(key, name, n)
        await pipe.execute()
    except Exception as exc:  # noqa: BLE001 - counting is best effort, the batch is already applied
        log.warning("could not update the worker's counters %s: %r", dict(counts), exc)


class SessionWriter:
    """Applies batches to Redis, one node or a cluster. Owns its connection pool; use ``async with``."""

    def __init__(self, settings: Settings, client: AsyncRedis | None = None) -> None:
        self.settings = settings
        self.limits = limits_from(settings)
        self.client = client or async_client(settings.redis_address, cluster=settings.redis_is_cluster,
                                             socket_timeout=10.0, socket_connect_timeout=5.0, health_check_interval=30)
        self.cluster = isinstance(self.client, RedisCluster)
        self._apply = self.client.register_script(APPLY_LUA)
        self._pop = self.client.register_script(POP_LUA)
        self._session = self.client.register_script(SESSION_LUA)
        self._fixed_args = [settings.session_max_len, settings.session_ttl_s, settings.cooc_window,
                            half_life_to_tau_ms(settings.popularity_half_life_s), settings.redis_prefix]

    async def __aenter__(self) -> SessionWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.client.aclose()

    async def count(self, counts: Mapping[str, int]) -> None:
        await _add_counts(self.client, counters_key(self.settings.redis_prefix), counts)

    async def apply(self, records: Sequence[Record], now_ms: int | None = None) -> BatchResult:
        """Validate and write one batch; when it returns, the batch is durable in Redis.

        Retries while Redis is unreachable: the batch must land before its offsets are committed.
        """
        now = int(time.time() * 1000) if now_ms is None else now_ms
        good, dead = validate(records, self.limits, now)
        result = BatchResult(dead=dead)
        if good:
            result.applied, result.duplicates = await _retrying(lambda: self._write(good))
        return result

    async def _write(self, good: Sequence[tuple[Record, ClickEvent]]) -> tuple[int, int]:
        if self.cluster:
            return await self._write_by_slot(good)
        prefix = self.settings.redis_prefix
        keys: list[str] = list(pop_keys(prefix))
        args: list[str | int | float] = list(self._fixed_args)
        for session_id, rows in group_by_session(good).items():
            keys.extend(session_keys(prefix, session_id))
            args.append(pack((ev.event_id, ev.timestamp, f"{rec.offset:019d}", ev.item_id, ev.event_type)
                             for rec, ev in rows))
        applied, duplicates = await self._apply(keys=keys, args=args)
        return int(applied), int(duplicates)

    async def _write_by_slot(self, good: Sequence[tuple[Record, ClickEvent]]) -> tuple[int, int]:
        """The cluster path: what APPLY_LUA does, as scripts and commands that each stay in one slot."""
        prefix = self.settings.redis_prefix
        max_len, ttl, window, tau, _ = self._fixed_args
        calls = [(session_keys(prefix, session_id),
                  [max_len, ttl, window, pack((ev.event_id, ev.timestamp, f"{rec.offset:019d}", ev.item_id,
                                               ev.event_type) for rec, ev in rows)])
                 for session_id, rows in group_by_session(good).items()]
        applied = duplicates = 0
        events: list[tuple[str, str]] = []  # (item, ts) applied, in APPLY_LUA's order
        cooc: Counter[tuple[str, str]] = Counter()
        for reply in await self._sessions(calls):
            applied, duplicates = applied + int(reply[0]), duplicates + int(reply[1])
            for rec in reply[2:]:
                item, ts, *partners = (rec.decode() if isinstance(rec, bytes) else rec).split(FIELD)
                events.append((item, ts))
                for other in partners:
                    cooc[item, other] += 1
                    cooc[other, item] += 1
        if events:
            await self._pop(keys=pop_keys(prefix), args=[tau, pack(events)])
        if cooc:
            pipe = self.client.pipeline(transaction=False)  # split by node, one round trip each
            for (item, other), n in cooc.items():
                pipe.zincrby(cooc_key(prefix, item), n, other)
            await pipe.execute()
        return applied, duplicates

    async def _sessions(self, calls: Sequence[tuple[Sequence[str], Sequence[object]]]) -> list[list[object]]:
        """SESSION_LUA for each (keys, args), pipelined by node. A call that meets a node without the
        script (restarted, failed over) is run again once loaded; the others are not, since a second
        run would find their events seen and report them as duplicates."""
        replies: list[list[object] | None] = [None] * len(calls)
        todo = list(range(len(calls)))
        for _ in range(3):
            pipe = self.client.pipeline(transaction=False)
            for i in todo:
                keys, args = calls[i]
                # redis-py blocks pipe.evalsha on a cluster; the command itself is routed by its keys
                pipe.execute_command("EVALSHA", self._session.sha, len(keys), *keys, *args)
            missing = []
            for i, result in zip(todo, await pipe.execute(raise_on_error=False), strict=True):
                if isinstance(result, NoScriptError):
                    missing.append(i)
                elif isinstance(result, BaseException):
                    raise result
                else:
                    replies[i] = result
            if not missing:
                return replies  # type: ignore[return-value]
            await self.client.script_load(SESSION_LUA)  # on every primary
            todo = missing
        raise RedisConnectionError("the session script could not be loaded on every cluster node")


class CountingWriter:
    """A dry-run stand-in for ``SessionWriter``: counts batches' records and writes nothing else.

    ``streamrec worker --dry-run`` uses it to measure what Faust alone sustains on a machine,
    the ceiling for the real worker; the count lands in the same counter benchmarks read.
    """

    def __init__(self, settings: Settings) -> None:
        self.client = async_client(settings.redis_address, cluster=settings.redis_is_cluster)
        self.counter = pop_keys(settings.redis_prefix)[3]
        self.counters = counters_key(settings.redis_prefix)

    async def __aenter__(self) -> CountingWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def apply(self, records: Sequence[Record]) -> BatchResult:
        await self.client.incrby(self.counter, len(records))
        return BatchResult(applied=len(records))

    async def count(self, counts: Mapping[str, int]) -> None:
        await _add_counts(self.client, self.counters, counts)


async def _retrying(attempt: Callable[[], Awaitable[T]]) -> T:
    """Retry ``attempt`` with capped exponential backoff while Redis is unreachable."""
    delay = 0.1
    while True:
        try:
            return await attempt()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("Redis write failed (%s); retrying in %.1fs", escape_text(str(exc), 500), delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
