"""What the archiver holds between flushes, and when it flushes. Kafka-free and clock-free.

Every consumed record advances its partition's offset to commit, whether it became an event
or was skipped as malformed: a flush commits exactly the records it accounted for, and a run
of malformed records is committed like any other (the worker dead-letters them; the archive
only counts them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from streamrec.archive.writer import Positioned
from streamrec.errors import ConfigError, InvalidEvent
from streamrec.events.schema import ClickEvent, EventLimits, parse_event

__all__ = ["FlushPolicy", "PendingBatch"]


@dataclass(frozen=True)
class FlushPolicy:
    """Flush after ``max_records`` records, or ``max_age_s`` after the first record of a batch:
    the first bounds memory and redelivery after a crash, the second how stale the archive gets."""

    max_records: int = 10_000
    max_age_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_records < 1 or not self.max_age_s > 0:
            raise ConfigError(f"archive flushes need at least 1 event and a positive age; got {self.max_records} "
                              f"events and {self.max_age_s} s (STREAMREC_ARCHIVE_FLUSH_EVENTS, _FLUSH_S)")

    def due(self, batch: PendingBatch, now: float) -> bool:
        if batch.started_at is None:
            return False
        return batch.records >= self.max_records or now - batch.started_at >= self.max_age_s


@dataclass
class PendingBatch:
    """Records consumed since the last flush: the events by partition, and the offsets to commit."""

    limits: EventLimits = field(default_factory=EventLimits)
    events: dict[int, list[Positioned]] = field(default_factory=dict)
    next_offsets: dict[int, int] = field(default_factory=dict)  # partition -> offset after its last record
    malformed: Counter[str] = field(default_factory=Counter)  # reason -> count
    records: int = 0
    started_at: float | None = None

    def add(self, partition: int, offset: int, value: bytes | None, now: float) -> ClickEvent | None:
        """Take one record; returns its event, or None when it is malformed (then counted)."""
        if self.started_at is None:
            self.started_at = now
        self.records += 1
        self.next_offsets[partition] = max(self.next_offsets.get(partition, 0), offset + 1)
        if value is None:
            self.malformed["tombstone"] += 1
            return None
        try:
            event = parse_event(value, self.limits)
        except InvalidEvent as exc:
            self.malformed[exc.reason] += 1
            return None
        self.events.setdefault(partition, []).append((offset, event))
        return event

    def by_partition(self) -> Iterator[tuple[int, list[Positioned]]]:
        yield from sorted(self.events.items())

    def __bool__(self) -> bool:
        return self.records > 0

    def reset(self) -> None:
        self.events, self.next_offsets, self.malformed = {}, {}, Counter()
        self.records, self.started_at = 0, None
