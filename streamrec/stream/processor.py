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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import orjson
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamrec.errors import InvalidEvent
from streamrec.events.schema import ClickEvent, EventLimits, parse_event
from streamrec.redis_access import AsyncRedis, async_client
from streamrec.settings import Settings
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

__all__ = ["BatchResult", "CountingWriter", "DeadLetter", "Record", "SessionWriter", "limits_from", "validate"]

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


@dataclass(frozen=True, slots=True)
class DeadLetter:
    record: Record
    reason: str
    detail: str

    def encode(self, now_ms: int) -> bytes:
        """Everything needed to inspect or replay the event: nothing of it is lost."""
        raw = self.record.value or b""
        try:
            text: str | None = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = None
        return orjson.dumps({
            "reason": self.reason,
            "detail": self.detail,
            "source": {"topic": self.record.topic, "partition": self.record.partition, "offset": self.record.offset},
            "key": self.record.key.decode("utf-8", "replace") if self.record.key is not None else None,
            "payload": text,
            "payload_b64": base64.b64encode(raw).decode(),
            "failed_at_ms": now_ms,
        })


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
        if record.key is not None and record.key != event.session_id.encode():
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

    async def __aenter__(self) -> CountingWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def apply(self, records: Sequence[Record]) -> BatchResult:
        await self.client.incrby(self.counter, len(records))
        return BatchResult(applied=len(records))


async def _retrying(attempt: Callable[[], Awaitable[T]]) -> T:
    """Retry ``attempt`` with capped exponential backoff while Redis is unreachable."""
    delay = 0.1
    while True:
        try:
            return await attempt()
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            log.warning("Redis write failed (%s); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
