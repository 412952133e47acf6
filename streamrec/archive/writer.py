"""Durable, de-duplicated appends to an archive folder.

A write splits events by date, drops the ones already archived (``SeenIds``) and publishes one
Parquet file per date: written under a temp name in its final folder, fsync'd, renamed, then
the folder fsync'd. When ``write`` returns, its files survive a power cut, which is what lets
the consumer commit Kafka offsets right after. A crash before the rename leaves a temp file
that ``open`` deletes; a crash after it leaves a published file whose records come again and
are dropped as duplicates.

One writer per archive: ``open`` takes an exclusive lock on ``<root>/.lock`` (released by the
kernel when the process dies, however it dies).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import IO, Final

import pyarrow as pa
import pyarrow.parquet as pq

from streamrec.archive.dedup import SeenIds
from streamrec.archive.layout import PartName, date_dir, date_of, leftover_temp_files, list_parts
from streamrec.errors import ArchiveError
from streamrec.events.schema import ClickEvent

__all__ = ["SCHEMA", "ArchiveWriter", "Positioned", "WriteResult", "events_table"]

log = logging.getLogger(__name__)

SCHEMA: Final = pa.schema([
    ("event_id", pa.string()),
    ("session_id", pa.string()),
    ("user_id", pa.string()),
    ("item_id", pa.string()),
    ("event_type", pa.dictionary(pa.int8(), pa.string())),
    ("timestamp", pa.int64()),  # milliseconds since the epoch, as on the wire
])

Positioned = tuple[int, ClickEvent]
"""An event and its position in its source: a Kafka offset, or a row of a seed replay."""


@dataclass
class WriteResult:
    written: int = 0
    duplicates: int = 0
    files: list[Path] = field(default_factory=list)

    def __iadd__(self, other: WriteResult) -> WriteResult:
        self.written += other.written
        self.duplicates += other.duplicates
        self.files += other.files
        return self


def events_table(events: Sequence[ClickEvent]) -> pa.Table:
    return pa.table({
        "event_id": [e.event_id for e in events],
        "session_id": [e.session_id for e in events],
        "user_id": [e.user_id for e in events],
        "item_id": [e.item_id for e in events],
        "event_type": [e.event_type for e in events],
        "timestamp": [e.timestamp for e in events],
    }, schema=SCHEMA)


class ArchiveWriter:
    """Appends events to the archive at ``root``; use as a context manager (or ``open``/``close``).

    ``max_ids`` bounds the event ids kept in memory for de-duplication (see ``dedup``).
    ``before_publish`` is called with each temp file just before its rename: a seam for the
    crash tests, which stop the process exactly there.
    """

    def __init__(self, root: Path, *, max_ids: int = 2_000_000,
                 before_publish: Callable[[Path], None] | None = None) -> None:
        self.root = root
        self.seen = SeenIds(self._archived_ids, max_ids)
        self._before_publish = before_publish
        self._lock: IO[bytes] | None = None

    def open(self) -> ArchiveWriter:
        """Lock the archive and delete what a crashed writer left (idempotent)."""
        if self._lock is not None:
            return self
        self.root.mkdir(parents=True, exist_ok=True)
        lock = open(self.root / ".lock", "ab")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            raise ArchiveError(f"another archiver is writing to {self.root}; stop it, or give this one its own "
                               "STREAMREC_ARCHIVE_DIR") from None
        self._lock = lock
        for leftover in leftover_temp_files(self.root):
            log.warning("deleting %s, left by a writer that stopped mid-file", leftover)
            leftover.unlink()
        return self

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> ArchiveWriter:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def write(self, source: str, events: Iterable[Positioned]) -> WriteResult:
        """Archive the events not archived yet, one durable file per date; ``source`` names the
        files (``p3`` for Kafka partition 3, ``seed``). Returns once every file is durable."""
        if self._lock is None:
            raise ArchiveError("the archive writer is not open")
        by_day: dict[date, list[Positioned]] = defaultdict(list)
        for positioned in events:
            by_day[date_of(positioned[1].timestamp)].append(positioned)
        result = WriteResult()
        for day in sorted(by_day):
            rows = by_day[day]
            kept = [rows[i] for i in self.seen.fresh(day, (e.event_id for _, e in rows))]
            result.duplicates += len(rows) - len(kept)
            if not kept:
                continue
            kept.sort(key=lambda row: (row[1].timestamp, row[0]))
            positions = [p for p, _ in kept]
            name = PartName(source, min(positions), max(positions))
            result.files.append(self._publish(day, name, events_table([e for _, e in kept])))
            self.seen.add(day, (e.event_id for _, e in kept))
            result.written += len(kept)
        return result

    def _publish(self, day: date, name: PartName, table: pa.Table) -> Path:
        folder = date_dir(self.root, day)
        if not folder.is_dir():
            folder.mkdir()
            _fsync_dir(self.root)
        temp = folder / name.temp_filename
        with open(temp, "wb") as f:
            pq.write_table(table, f, compression="zstd")
            f.flush()
            os.fsync(f.fileno())
        if self._before_publish is not None:
            self._before_publish(temp)
        final = folder / name.filename
        while final.exists():  # never replace a published file
            name = PartName(name.source, name.first, name.last, name.copy + 1)
            final = folder / name.filename
        os.replace(temp, final)
        _fsync_dir(folder)
        return final

    def _archived_ids(self, day: date) -> list[str]:
        ids: list[str] = []
        for part in list_parts(date_dir(self.root, day)):
            ids += pq.read_table(part, columns=["event_id"]).column("event_id").to_pylist()
        return ids


def _fsync_dir(path: Path) -> None:
    """Make the folder's entries (a new file name, a rename) durable, not only the files' data."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
