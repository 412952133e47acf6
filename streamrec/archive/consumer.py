"""The archiver: a Kafka consumer, in a group of its own, that appends the clicks topic to the archive.

At-least-once without duplicates. Offsets are committed by hand, and only for records whose
events are in durable files (or that were skipped as malformed), so a crash at any point
means Kafka sends some records again; those already archived are dropped by event id
(``dedup``).

Rebalances need no listener for the same reason: records still pending when a partition is
taken away come again, from the committed offset, to whichever member gets it, and the copies
are dropped by id. (kafka-python 3 runs rebalance listeners on its IO thread, where the
blocking commit a flush ends with is not allowed.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from streamrec.archive.batch import FlushPolicy, PendingBatch
from streamrec.archive.writer import ArchiveWriter, WriteResult
from streamrec.errors import ConfigError, InfraError
from streamrec.kafka_security import kafka_python_kwargs
from streamrec.settings import Settings

__all__ = ["ArchiveConfig", "ArchiveReport", "run_archiver"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchiveConfig:
    """What to archive, where, and when to stop.

    ``idle_s``: stop once every assigned partition is caught up and no record came for this
    long (0: as soon as caught up); None runs until ``stop`` is set.
    """

    root: Path
    topic: str
    group_id: str
    policy: FlushPolicy = field(default_factory=FlushPolicy)
    max_ids: int = 2_000_000
    idle_s: float | None = None
    poll_s: float = 0.5

    def __post_init__(self) -> None:
        if self.max_ids < 1 or (self.idle_s is not None and self.idle_s < 0) or not self.poll_s > 0:
            raise ConfigError(f"archive: STREAMREC_ARCHIVE_DEDUP_IDS must be >= 1, the idle time >= 0 and the poll "
                              f"time > 0; got {self.max_ids}, {self.idle_s} and {self.poll_s}")

    @classmethod
    def from_settings(cls, settings: Settings, *, root: Path | None = None, idle_s: float | None = None) -> ArchiveConfig:
        return cls(root=root or settings.archive_dir, topic=settings.clicks_topic,
                   group_id=settings.archive_group_id or f"{settings.app_id}-archive",
                   policy=FlushPolicy(settings.archive_flush_events, settings.archive_flush_s),
                   max_ids=settings.archive_dedup_ids, idle_s=idle_s)


@dataclass
class ArchiveReport:
    records: int = 0
    written: int = 0
    duplicates: int = 0
    malformed: Counter[str] = field(default_factory=Counter)
    files: int = 0
    flushes: int = 0
    failed_commits: int = 0  # retried with the next flush; meanwhile a restart only re-reads (and drops) records
    seconds: float = 0.0


OnFlush = Callable[[ArchiveReport, WriteResult], None]


def run_archiver(settings: Settings, config: ArchiveConfig, *, stop: threading.Event | None = None,
                 on_flush: OnFlush | None = None, before_publish: Callable[[Path], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> ArchiveReport:
    """Archive ``config.topic`` until ``stop`` is set or, with ``config.idle_s``, until caught up.
    Pending records are flushed and committed on the way out (not when an exception escapes)."""
    from streamrec.stream.processor import limits_from
    from streamrec.stream.topics import ensure_topics

    ensure_topics(settings)
    stop = stop or threading.Event()
    report = ArchiveReport()
    pending = PendingBatch(limits_from(settings))
    uncommitted: dict[int, int] = {}  # partition -> offset after its last durable record; kept if a commit fails
    started = clock()
    with ArchiveWriter(config.root, max_ids=config.max_ids, before_publish=before_publish) as writer:
        consumer = _consumer(settings, config)

        def flush() -> None:
            if not pending and not uncommitted:
                return
            result = WriteResult()
            for partition, rows in pending.by_partition():
                result += writer.write(f"p{partition}", rows)
            for partition, offset in pending.next_offsets.items():
                uncommitted[partition] = max(uncommitted.get(partition, 0), offset)
            if _commit(consumer, config.topic, uncommitted, report):
                uncommitted.clear()
            if pending:
                report.records += pending.records
                report.written += result.written
                report.duplicates += result.duplicates
                report.malformed += pending.malformed
                report.files += len(result.files)
                report.flushes += 1
                pending.reset()
                if on_flush is not None:
                    on_flush(report, result)

        consumer.partitions_for_topic(config.topic)  # metadata first: a join without it assigns nothing
        consumer.subscribe([config.topic])
        try:
            last_record = clock()
            while not stop.is_set():
                polled = consumer.poll(timeout_ms=int(config.poll_s * 1000))
                now = clock()
                for records in polled.values():
                    for record in records:
                        pending.add(record.partition, record.offset, record.value, now)
                        if config.policy.due(pending, now):
                            flush()
                    last_record = now
                if config.policy.due(pending, now):
                    flush()
                if (config.idle_s is not None and not polled and now - last_record >= config.idle_s
                        and _caught_up(consumer)):
                    break
            flush()
        finally:
            consumer.close(autocommit=False)
    report.seconds = clock() - started
    return report


def _consumer(settings: Settings, config: ArchiveConfig) -> KafkaConsumer:
    try:
        return KafkaConsumer(**kafka_python_kwargs(settings.kafka_access), group_id=config.group_id,
                             client_id="streamrec-archive", enable_auto_commit=False, auto_offset_reset="earliest",
                             max_poll_records=min(config.policy.max_records, 2000),
                             # after a crash the restarted archiver waits this long for the dead member's partitions
                             session_timeout_ms=int(settings.session_timeout_s * 1000),
                             heartbeat_interval_ms=int(settings.heartbeat_interval_s * 1000))
    except KafkaError as exc:
        raise InfraError(f"cannot reach Kafka at {settings.kafka_bootstrap} ({exc}). Try: streamrec infra up") from exc


def _commit(consumer: KafkaConsumer, topic: str, offsets: dict[int, int], report: ArchiveReport) -> bool:
    try:
        consumer.commit({TopicPartition(topic, p): OffsetAndMetadata(o, "", -1) for p, o in offsets.items()})
    except KafkaError as exc:
        # The files are durable already: until a later commit succeeds, a restart re-reads the records and drops them.
        report.failed_commits += 1
        log.warning("could not commit archived offsets (%s); retrying with the next flush", exc)
        return False
    return True


def _caught_up(consumer: KafkaConsumer) -> bool:
    assigned = list(consumer.assignment())
    if not assigned:
        return False
    ends = consumer.end_offsets(assigned)
    return all(consumer.position(tp) >= ends[tp] for tp in assigned)

