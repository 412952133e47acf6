"""Reading the archive back: the trainer's events, and a summary for people."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from streamrec.archive.layout import date_dir, list_dates, list_parts
from streamrec.archive.writer import SCHEMA
from streamrec.errors import ArchiveError, ConfigError

__all__ = ["ArchiveStats", "DateStats", "archive_stats", "read_archive"]


def read_archive(root: Path, since_days: int | None = None, *, columns: list[str] | None = None) -> pd.DataFrame:
    """Archived events as a DataFrame sorted by (timestamp, event_id); ``timestamp`` in milliseconds.

    ``since_days`` keeps the last N dates counted back from the newest date in the archive
    (not from today), so a historical archive such as an ML-1M seed reads like a live one.
    The archive holds each event id once per date; an id reused under another date (a producer
    that re-stamped an event) is kept once here too, its earliest copy.
    """
    wanted = columns or SCHEMA.names
    read = list(dict.fromkeys([*wanted, "event_id", "timestamp"]))
    days = _selected_days(root, since_days)
    tables = [_read(part, read) for day in days for part in list_parts(date_dir(root, day))]
    table = pa.concat_tables(tables) if tables else SCHEMA.empty_table().select(read)
    frame = table.to_pandas()
    if "event_type" in frame:
        frame["event_type"] = frame["event_type"].astype(str)
    if "user_id" in frame:  # None, as in ClickEvent, rather than the NaN pandas makes of some null columns
        frame["user_id"] = frame["user_id"].astype(object).where(frame["user_id"].notna(), None)
    frame = frame.sort_values(["timestamp", "event_id"], kind="stable").drop_duplicates("event_id", keep="first")
    return frame[wanted].reset_index(drop=True)


@dataclass(frozen=True)
class DateStats:
    day: date
    files: int
    events: int
    bytes: int


@dataclass(frozen=True)
class ArchiveStats:
    dates: list[DateStats]
    sessions: int
    items: int
    users: int

    @property
    def files(self) -> int:
        return sum(d.files for d in self.dates)

    @property
    def events(self) -> int:
        return sum(d.events for d in self.dates)

    @property
    def bytes(self) -> int:
        return sum(d.bytes for d in self.dates)


def archive_stats(root: Path) -> ArchiveStats:
    """Per date: files, events and bytes (from Parquet footers); overall: distinct sessions, items, users."""
    per_date = []
    for day in list_dates(root):
        parts = list_parts(date_dir(root, day))
        events = sum(_footer(p).num_rows for p in parts)
        per_date.append(DateStats(day, len(parts), events, sum(p.stat().st_size for p in parts)))
    ids = read_archive(root, columns=["session_id", "item_id", "user_id"])
    return ArchiveStats(per_date, ids["session_id"].nunique(), ids["item_id"].nunique(), ids["user_id"].nunique())


def _selected_days(root: Path, since_days: int | None) -> list[date]:
    days = list_dates(root)
    if since_days is None or not days:
        return days
    if since_days < 1:
        raise ConfigError(f"since_days must be >= 1, got {since_days}")
    first = days[-1] - timedelta(days=since_days - 1)
    return [d for d in days if d >= first]


def _read(part: Path, columns: list[str] | None) -> pa.Table:
    try:
        return pq.read_table(part, columns=columns)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ArchiveError(f"cannot read {part} ({exc}); move it out of the archive to read the rest") from exc


def _footer(part: Path) -> pq.FileMetaData:
    try:
        return pq.read_metadata(part)
    except (OSError, pa.ArrowInvalid) as exc:
        raise ArchiveError(f"cannot read {part} ({exc}); move it out of the archive to read the rest") from exc
