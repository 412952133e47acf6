"""Seed the archive from a MovieLens replay, without Kafka.

The events are the very payloads ``streamrec publish --dataset`` would send (same event ids,
sessions and validation), so seeding and then archiving a published replay of the same data
stores each event once: the writer drops the second copy by event id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from tqdm import tqdm

from streamrec.archive.layout import date_of
from streamrec.archive.writer import ArchiveWriter, Positioned, WriteResult
from streamrec.errors import InvalidEvent
from streamrec.events.schema import EventLimits, parse_event

__all__ = ["SEED_SOURCE", "SeedReport", "seed_archive", "seed_from_dataset"]

SEED_SOURCE: Final = "seed"


@dataclass
class SeedReport:
    events: int = 0
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (position in the replay, why)
    result: WriteResult = field(default_factory=WriteResult)


def seed_from_dataset(dataset: str, data_dir: Path, writer: ArchiveWriter, *, limit: int | None = None,
                      session_gap_s: int = 3600, limits: EventLimits = EventLimits(),
                      progress: bool = False) -> SeedReport:
    """Archive a MovieLens dataset replayed as clicks, like ``streamrec publish --dataset`` replays it."""
    from streamrec.publish.sources import dataset_events

    payloads = dataset_events(dataset, data_dir, limit, session_gap_s)
    return seed_archive(((n - 1, payload) for n, payload in payloads), writer, limits=limits, progress=progress)


def seed_archive(payloads: Iterable[tuple[int, bytes]], writer: ArchiveWriter, *, limits: EventLimits = EventLimits(),
                 chunk: int = 50_000, progress: bool = False) -> SeedReport:
    """Archive ``(position, payload)`` pairs in time order. Chunks end where a date does, so each
    date of a time-ordered replay gets one file."""
    report = SeedReport()
    buffered: list[Positioned] = []
    bar = tqdm(unit="ev", disable=not progress, smoothing=0.1, dynamic_ncols=True, desc="seeding")
    try:
        for position, payload in payloads:
            report.events += 1
            bar.update()
            try:
                event = parse_event(payload, limits)
            except InvalidEvent as exc:
                report.invalid.append((position, str(exc)))
                continue
            if len(buffered) >= chunk and date_of(event.timestamp) != date_of(buffered[-1][1].timestamp):
                report.result += writer.write(SEED_SOURCE, buffered)
                buffered = []
            buffered.append((position, event))
        report.result += writer.write(SEED_SOURCE, buffered)
    finally:
        bar.close()
    return report
