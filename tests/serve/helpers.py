"""Write sessions into Redis exactly as the worker does (``SessionWriter``), minus Kafka."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from streamrec.events.schema import encode_event
from streamrec.settings import Settings
from streamrec.stream.processor import Record, SessionWriter


def write_session(settings: Settings, session_id: str, item_ids: Sequence[str], *, event_type: str = "click",
                  start_ms: int | None = None, offset: int = 0) -> None:
    start = int(time.time() * 1000) - 60_000 if start_ms is None else start_ms
    records = [Record(settings.clicks_topic, 0, offset + i, session_id.encode(), encode_event({
        "event_id": f"{session_id}-{offset + i}", "session_id": session_id, "item_id": item,
        "event_type": event_type, "timestamp": start + 1000 * i})) for i, item in enumerate(item_ids)]

    async def write() -> None:
        async with SessionWriter(settings) as writer:
            result = await writer.apply(records)
            assert not result.dead, result.dead

    asyncio.run(write())
