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
from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MovedError,
    NoScriptError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from streamrec.errors import InvalidEvent, RedisRolledBack
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
    offsets_key,
    pack,
    partition_field,
    pop_keys,
    session_keys,
    session_position_key,
)

__all__ = ["BatchResult", "CountingWriter", "DeadLetter", "DeadLetterMessage", "Record", "SessionWriter",
           "counters_key", "limits_from", "validate"]

log = logging.getLogger(__name__)
T = TypeVar("T")

# Replies that say where a key lives or that the cluster is moving, not that Redis refused the data:
# the batch is retried rather than its session sent to the dead-letter topic.
_CLUSTER_STATE_ERRORS = (AskError, BusyLoadingError, ClusterDownError, MovedError, TryAgainError)


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


Partition = tuple[str, int]  # (topic, partition)


@dataclass(frozen=True, slots=True)
class _Plan:
    """One batch as the scripts take it: its sessions' packed records, and per partition the batch's
    last offset and the last offset this worker applied there (absent if none). The scripts name a
    partition by its 1-based position in ``last`` (``index``)."""

    sessions: list[tuple[str, list[tuple[Record, ClickEvent]], str]]  # (session id, rows, packed)
    last: dict[Partition, int]
    expected: Mapping[Partition, int]

    @property
    def n(self) -> int:
        return len(self.last)

    @property
    def names(self) -> list[str]:
        return [partition_field(*tp) for tp in self.last]

    @property
    def partition_args(self) -> list[str | int]:
        """(name, expected or '', last) per partition, as ``read_marks`` in the scripts takes them."""
        return [x for tp, end in self.last.items()
                for x in (partition_field(*tp), str(self.expected[tp]) if tp in self.expected else "", end)]


def _index(last: Mapping[Partition, int]) -> dict[Partition, str]:
    return {tp: str(i + 1) for i, tp in enumerate(last)}


def _plan(good: Sequence[tuple[Record, ClickEvent]], records: Sequence[Record],
          applied: Mapping[Partition, int]) -> _Plan:
    last: dict[Partition, int] = {}
    for r in records:  # dead letters too: once the batch is settled, their offsets are done with
        last[r.topic, r.partition] = max(r.offset, last.get((r.topic, r.partition), -1))
    index = _index(last)
    sessions = [(sid, rows, pack((ev.event_id, ev.timestamp, f"{rec.offset:019d}", ev.item_id, ev.event_type,
                                   index[rec.topic, rec.partition]) for rec, ev in rows))
                for sid, rows in group_by_session(good).items()]
    return _Plan(sessions, last, {tp: applied[tp] for tp in last if tp in applied})


class SessionWriter:
    """Applies batches to Redis, one node or a cluster. Owns its connection pool; use ``async with``.

    It remembers the last offset it applied per partition, to notice a Redis that lost them
    (``RedisRolledBack``)."""

    def __init__(self, settings: Settings, client: AsyncRedis | None = None) -> None:
        self.settings = settings
        self.limits = limits_from(settings)
        self.client = client or async_client(settings.redis_address, cluster=settings.redis_is_cluster,
                                             socket_timeout=10.0, socket_connect_timeout=5.0, health_check_interval=30)
        self.cluster = isinstance(self.client, RedisCluster)
        self._apply = self.client.register_script(APPLY_LUA)
        self._pop = self.client.register_script(POP_LUA)
        self._session = self.client.register_script(SESSION_LUA)
        self._applied: dict[Partition, int] = {}

    async def __aenter__(self) -> SessionWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.client.aclose()

    async def count(self, counts: Mapping[str, int]) -> None:
        await _add_counts(self.client, counters_key(self.settings.redis_prefix), counts)

    async def apply(self, records: Sequence[Record], now_ms: int | None = None) -> BatchResult:
        """Validate and write one batch; when it returns, the batch is in Redis and its partitions'
        applied offsets with it. Sessions that Redis refused (an error on their keys) come back as
        dead letters, the others are applied all the same.

        Retries while Redis is unreachable: the batch must land before its offsets are committed.
        Raises ``RedisRolledBack`` when Redis holds less than this writer applied.
        """
        now = int(time.time() * 1000) if now_ms is None else now_ms
        good, dead = validate(records, self.limits, now)
        result = BatchResult(dead=dead)
        if not records:
            return result
        plan = _plan(good, records, self._applied)
        write = self._write_by_slot if self.cluster else self._write
        result.applied, result.duplicates, failed = await _retrying(lambda: write(plan))
        for k, message in failed:
            sid, rows, _ = plan.sessions[k]
            result.dead.extend(DeadLetter(rec, "redis_error", f"Redis refused session {sid!r}: {message}")
                               for rec, _ in rows)
        self._applied.update(plan.last)
        return result

    def _rolled_back(self, reply: Sequence[object]) -> RedisRolledBack:
        name, mark, expected = (_text(x) for x in reply[1:4])
        return RedisRolledBack(
            f"Redis holds offset {mark} as the last applied of {name}, but this worker applied up to {expected} "
            "there: Redis lost acknowledged writes (a crash before its append-only file was synced?). The worker "
            "stops; restarted, it re-reads the partition from the offset Redis kept")

    def _fixed(self) -> list[str | int | float]:
        s = self.settings
        return [s.session_max_len, s.session_ttl_s, s.cooc_window, half_life_to_tau_ms(s.popularity_half_life_s),
                s.redis_prefix, s.counter_max_items, s.cooc_max_partners, s.cooc_ttl_s, s.session_dedup_ids]

    async def _write(self, plan: _Plan) -> tuple[int, int, list[tuple[int, str]]]:
        prefix = self.settings.redis_prefix
        keys: list[str] = [*pop_keys(prefix), offsets_key(prefix)]
        args: list[str | int | float] = [*self._fixed(), plan.n, *plan.partition_args]
        for sid, _, packed in plan.sessions:
            keys.extend(session_keys(prefix, sid))
            args.append(packed)
        reply = await self._apply(keys=keys, args=args)
        if int(reply[0]) == 1:
            raise self._rolled_back(reply)
        failed = [(int(k) - 1, _text(message)) for k, message in zip(reply[3::2], reply[4::2], strict=True)]
        return int(reply[1]), int(reply[2]), failed

    async def _write_by_slot(self, plan: _Plan) -> tuple[int, int, list[tuple[int, str]]]:
        """The cluster path: what APPLY_LUA does, as scripts and commands that each stay in one slot.
        Sessions first, so that the counters leave out the sessions Redis refused; then popularity and
        the offsets; then the co-occurrence of the events new to the counters."""
        s, prefix = self.settings, self.settings.redis_prefix
        names = plan.names
        calls = [((*session_keys(prefix, sid), session_position_key(prefix, sid)),
                  [s.session_max_len, s.session_ttl_s, s.cooc_window, s.session_dedup_ids, packed, *names])
                 for sid, _, packed in plan.sessions]
        applied = duplicates = 0
        failed: list[tuple[int, str]] = []
        new_events: list[tuple[str, int, str, list[str]]] = []  # (item, offset, tp index, partners)
        left_out: set[tuple[int, int]] = set()  # (session, offset): refused, or an event id seen before
        for k, reply in enumerate(await self._sessions(calls)):
            if isinstance(reply, ResponseError):
                failed.append((k, str(reply)))
                left_out.update((k, rec.offset) for rec, _ in plan.sessions[k][1])
                continue
            applied, duplicates = applied + int(reply[0]), duplicates + int(reply[1])
            left_out.update((k, int(offset)) for offset in _text(reply[2]).split(FIELD) if offset)
            for rec in reply[3:]:
                item, offset, tp, *partners = _text(rec).split(FIELD)
                new_events.append((item, int(offset), tp, partners))
        index = _index(plan.last)
        counted = pack((ev.item_id, ev.timestamp, f"{rec.offset:019d}", index[rec.topic, rec.partition])
                       for k, (_, rows, _) in enumerate(plan.sessions) for rec, ev in rows
                       if (k, rec.offset) not in left_out)
        pop = await self._pop(keys=[*pop_keys(prefix), offsets_key(prefix)], args=[
            half_life_to_tau_ms(s.popularity_half_life_s), s.counter_max_items, plan.n, *plan.partition_args, counted])
        if int(pop[0]) == 1:
            raise self._rolled_back(pop)
        marks = {str(i + 1): int(m) for i, m in enumerate(pop[2:2 + plan.n])}
        dropped = [_text(item) for item in pop[2 + plan.n:]]
        cooc: Counter[tuple[str, str]] = Counter()
        for item, offset, tp, partners in new_events:
            if offset > marks[tp]:  # new to the counters: a replay is not counted twice
                for other in partners:
                    cooc[item, other] += 1
                    cooc[other, item] += 1
        if cooc or dropped:
            pipe = self.client.pipeline(transaction=False)  # split by node, one round trip each
            for (item, other), n in cooc.items():
                pipe.zincrby(cooc_key(prefix, item), n, other)
            for key in {cooc_key(prefix, item) for item, _ in cooc}:
                pipe.zremrangebyrank(key, 0, -(s.cooc_max_partners + 1))
                pipe.expire(key, s.cooc_ttl_s)
            for item in dropped:
                pipe.delete(cooc_key(prefix, item))
            await pipe.execute()
        return applied, duplicates, failed

    async def _sessions(self, calls: Sequence[tuple[Sequence[str], Sequence[object]]]
                        ) -> list[list[object] | ResponseError]:
        """SESSION_LUA for each (keys, args), pipelined by node; a session that Redis refuses
        (``ResponseError``) is returned as its error, the others go on. A call that meets a node without
        the script (restarted, failed over) is run again once loaded; the others are not, since a
        second run would find their events seen and report them as duplicates."""
        replies: list[list[object] | ResponseError | None] = [None] * len(calls)
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
                elif isinstance(result, ResponseError) and not isinstance(result, _CLUSTER_STATE_ERRORS):
                    replies[i] = result
                elif isinstance(result, BaseException):
                    raise result
                else:
                    replies[i] = result
            if not missing:
                return replies  # type: ignore[return-value]
            await self.client.script_load(SESSION_LUA)  # on every primary
            todo = missing
        raise RedisConnectionError("the session script could not be loaded on every cluster node")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class CountingWriter:
    """A dry-run stand-in for ``SessionWriter``: counts batches' records and writes nothing else.

    ``streamrec worker --dry-run`` uses it to measure what Faust alone sustains on a machine,
    the ceiling for the real worker; the count lands in the same counter benchmarks read. With
    ``parse`` it also validates each batch and plans its write as ``SessionWriter`` would, and
    throws the plan away: Faust plus our Python, without Redis.
    """

    def __init__(self, settings: Settings, parse: bool = False) -> None:
        self.limits = limits_from(settings) if parse else None
        self.client = async_client(settings.redis_address, cluster=settings.redis_is_cluster)
        self.counter = pop_keys(settings.redis_prefix)[3]
        self.counters = counters_key(settings.redis_prefix)

    async def __aenter__(self) -> CountingWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()

    async def apply(self, records: Sequence[Record]) -> BatchResult:
        if self.limits is not None:
            good, _ = validate(records, self.limits, int(time.time() * 1000))
            _plan(good, records, {})
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
