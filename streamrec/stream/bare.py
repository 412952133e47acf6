"""``streamrec worker --dry-run aiokafka``: the clicks topic read by a bare aiokafka consumer, no Faust.

The floor of Python Kafka consumption on a machine, the first row of ``bench ingest --layers``:
``getmany`` of up to ``BATCH`` records, nothing done with them but counting, and the count added,
once a call, to the Redis counter that the worker and its dry runs feed, so that the bench times
every layer the same way. It joins the worker's consumer group and fetches and commits as the
worker does (fetch sizes and wait, commit interval), so only Faust's layer is missing.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiokafka import AIOKafkaConsumer

from streamrec.kafka_security import aiokafka_kwargs
from streamrec.redis_access import async_client
from streamrec.settings import Settings
from streamrec.stream.session_store import pop_keys

__all__ = ["BATCH", "consume_bare"]

log = logging.getLogger(__name__)

BATCH = 5000  # records per getmany: the largest batch a plain consumer would take


async def consume_bare(settings: Settings) -> None:
    """Count the clicks topic's records into the applied-events counter until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    consumer = AIOKafkaConsumer(settings.clicks_topic, group_id=settings.app_id, auto_offset_reset="earliest",
                                enable_auto_commit=True, auto_commit_interval_ms=int(settings.commit_interval_s * 1000),
                                max_partition_fetch_bytes=settings.kafka_max_message_bytes,
                                fetch_min_bytes=settings.fetch_min_bytes, fetch_max_wait_ms=settings.fetch_max_wait_ms,
                                session_timeout_ms=int(settings.session_timeout_s * 1000),
                                heartbeat_interval_ms=int(settings.heartbeat_interval_s * 1000),
                                **aiokafka_kwargs(settings.kafka_access))
    client = async_client(settings.redis_address, cluster=settings.redis_is_cluster)
    counter = pop_keys(settings.redis_prefix)[3]
    await consumer.start()
    log.warning("Ready: bare aiokafka consumer on %s, group %s", settings.clicks_topic, settings.app_id)
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=BATCH)
            n = sum(len(records) for records in batches.values())
            if n:
                await client.incrby(counter, n)
    finally:
        await consumer.stop()
        await client.aclose()
