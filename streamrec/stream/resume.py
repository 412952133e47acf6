"""The worker resumes each partition from the offset Redis holds, not only from Kafka's commit.

Faust seeks every assigned partition to the group's committed offset after each rebalance
(``Consumer.perform_seek``). A batch's offsets are committed once its script has returned, but Redis
syncs its append-only file about once a second: a crash of Redis's machine can lose writes whose
offsets Kafka already holds. The applied offsets live in Redis with the data (``{pop}:offsets``,
written by the same script), so whatever Redis kept is a consistent prefix of the stream, and the
events after it can be read again. This consumer therefore seeks a partition back to Redis's applied
offset + 1 when that is behind the commit: the events Redis lost are applied again, and nothing is
applied twice (the scripts skip offsets at or below the applied one). This is how Kafka Streams and
Flink keep a sink's positions with its state, rather than waiting on ``WAITAOF`` (Redis 7.2+).

It never seeks forward past a commit: Faust commits only offsets contiguous with the committed one.
Where there is no commit yet (a new consumer group on an existing Redis), it starts after Redis's.
A Redis that loses writes while a worker runs is noticed by ``SessionWriter`` (``RedisRolledBack``):
that worker stops, and its restart comes through here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping

import faust
from faust.types import TP

from streamrec.errors import InfraError
from streamrec.redis_access import async_client
from streamrec.settings import Settings
from streamrec.stream.session_store import offsets_key, partition_field

__all__ = ["applied_offsets", "install_resume", "resume_positions"]

log = logging.getLogger(__name__)


def resume_positions(committed: Mapping[TP, int | None], applied: Mapping[TP, int]) -> dict[TP, int]:
    """Where to seek: Redis's applied offset + 1 where it is behind Kafka's commit, or where nothing
    is committed. Pure."""
    return {tp: applied[tp] + 1 for tp, position in committed.items()
            if tp in applied and (position is None or applied[tp] + 1 < position)}


async def applied_offsets(settings: Settings, tps: Iterable[TP], tries: int = 5) -> dict[TP, int]:
    """The last applied offset Redis holds for each of ``tps`` that has one."""
    tps = list(tps)
    delay = 0.2
    for attempt in range(1, tries + 1):
        client = async_client(settings.redis_address, cluster=settings.redis_is_cluster,
                              socket_timeout=5.0, socket_connect_timeout=5.0)
        try:
            values = await client.hmget(offsets_key(settings.redis_prefix),
                                        [partition_field(tp.topic, tp.partition) for tp in tps]) if tps else []
            return {tp: int(v) for tp, v in zip(tps, values, strict=True) if v is not None}
        except Exception as exc:
            if attempt == tries:
                raise InfraError(f"could not read the applied offsets from Redis ({exc!r}); the worker cannot "
                                 "know where to resume") from exc
            log.warning("could not read the applied offsets from Redis (%r); retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)
            delay *= 2
        finally:
            await client.aclose()
    raise AssertionError("unreachable")


def install_resume(app: faust.App, settings: Settings) -> None:
    """Make ``app``'s consumer seek the clicks topic's partitions to where Redis says to resume."""
    base = app.transport.Consumer

    class ResumingConsumer(base):  # type: ignore[misc,valid-type]
        async def perform_seek(self) -> None:
            await super().perform_seek()
            tps = [tp for tp in self.assignment() if tp.topic == settings.clicks_topic]
            committed = {tp: self._committed_offset.get(tp) for tp in tps}
            seeks = resume_positions(committed, await applied_offsets(settings, tps))
            for tp, offset in seeks.items():
                log.warning("resuming %s[%d] at offset %d, after the last one Redis holds as applied "
                            "(Kafka's commit: %s)", tp.topic, tp.partition, offset, committed[tp])
            if seeks:
                await self.seek_wait(seeks)

    app.transport.Consumer = ResumingConsumer
