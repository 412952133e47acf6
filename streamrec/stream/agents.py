"""The session agent: a thin loop that hands batches to ``SessionWriter``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence

import faust
from faust.types import EventT

from streamrec.settings import Settings
from streamrec.stream.processor import CountingWriter, Record, SessionWriter
from streamrec.stream.topics import Topics

__all__ = ["register_session_agent"]

log = logging.getLogger(__name__)


def _record(event: EventT) -> Record:
    m = event.message
    return Record(m.topic, m.partition, m.offset, m.key, m.value)


def register_session_agent(app: faust.App, topics: Topics, settings: Settings, dry_run: bool = False) -> None:
    @app.agent(topics.clicks, name="sessions")
    async def sessions(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        async with CountingWriter(settings) if dry_run else SessionWriter(settings) as writer:
            async for events in stream.take_events(settings.batch_max, within=settings.batch_within_s):
                await _process(writer, topics, events)
                yield None

    _ = sessions


async def _process(writer: SessionWriter | CountingWriter, topics: Topics, events: Sequence[EventT]) -> None:
    result = await writer.apply([_record(e) for e in events])
    if result.duplicates:
        log.info("skipped %d redelivered event(s) already in Redis", result.duplicates)
    if result.dead:
        now_ms = int(time.time() * 1000)
        # wait for the dead letters to be durable before take() acks the batch
        futures = [await topics.dead_letters.send(key=d.record.key, value=d.encode(now_ms)) for d in result.dead]
        await asyncio.gather(*futures)
        log.warning("%d event(s) sent to the dead-letter topic; first: %s (%s)",
                    len(result.dead), result.dead[0].reason, result.dead[0].detail)
