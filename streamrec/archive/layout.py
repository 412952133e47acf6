"""Where archived events live on disk, and what the file names mean.

An archive is a folder of Parquet files partitioned by the UTC date of each event's own
timestamp (event time, not arrival time), the Hive way, so pyarrow, pandas, Spark and DuckDB
read it as it is::

    <root>/date=2000-12-31/part-p3-1200-1399.parquet
    <root>/date=2000-12-31/part-seed-0-977.parquet

``part-<source>-<first>-<last>``: ``source`` is ``p<N>`` for Kafka partition N, with ``first``
and ``last`` the offsets of the first and last record the file holds (records of other dates
in between are in other folders), or ``seed`` for events written by ``streamrec archive seed``,
with positions in the replay instead of offsets. The names are provenance for people; nothing
relies on them to avoid duplicates (event ids do that, see ``dedup``). A file being written is
``.part-....parquet.tmp`` in its final folder, so the rename that publishes it is atomic.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Final

__all__ = ["DATE_PREFIX", "PartName", "date_dir", "date_of", "leftover_temp_files", "list_dates", "list_parts"]

DATE_PREFIX: Final = "date="
_EPOCH: Final = date(1970, 1, 1)
_MS_PER_DAY: Final = 86_400_000
_PART = re.compile(r"^part-(?P<source>[a-z0-9]+)-(?P<first>\d+)-(?P<last>\d+)(?:~(?P<copy>\d+))?\.parquet$")
_TEMP_SUFFIX: Final = ".tmp"


@dataclass(frozen=True, order=True)
class PartName:
    """One data file's name. ``copy`` tells apart two files that would otherwise share a name
    (the same offsets of a topic deleted and created again); it is 0 for almost every file."""

    source: str
    first: int
    last: int
    copy: int = 0

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[a-z0-9]+", self.source):
            raise ValueError(f"a part's source is lower-case letters and digits, got {self.source!r}")
        if not 0 <= self.first <= self.last or self.copy < 0:
            raise ValueError(f"a part needs 0 <= first <= last and copy >= 0, got {self.first}, {self.last}, {self.copy}")

    @property
    def filename(self) -> str:
        suffix = f"~{self.copy}" if self.copy else ""
        return f"part-{self.source}-{self.first}-{self.last}{suffix}.parquet"

    @property
    def temp_filename(self) -> str:
        return f".{self.filename}{_TEMP_SUFFIX}"

    @classmethod
    def parse(cls, filename: str) -> PartName | None:
        """The name's parts, or None for a file that is not an archive part."""
        m = _PART.match(filename)
        if m is None:
            return None
        return cls(m["source"], int(m["first"]), int(m["last"]), int(m["copy"] or 0))


def date_of(timestamp_ms: int) -> date:
    """The UTC date of a millisecond timestamp."""
    return _EPOCH + timedelta(days=timestamp_ms // _MS_PER_DAY)


def date_dir(root: Path, day: date) -> Path:
    return root / f"{DATE_PREFIX}{day.isoformat()}"


def list_dates(root: Path) -> list[date]:
    """The dates that have a folder, oldest first; other entries of ``root`` are ignored."""
    days = []
    if root.is_dir():
        for entry in root.iterdir():
            if entry.is_dir() and entry.name.startswith(DATE_PREFIX):
                try:
                    days.append(date.fromisoformat(entry.name[len(DATE_PREFIX):]))
                except ValueError:
                    continue
    return sorted(days)


def list_parts(folder: Path) -> list[Path]:
    """The published data files of one date folder, in name order (temp files excluded)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if PartName.parse(p.name) is not None)


def leftover_temp_files(root: Path) -> Iterator[Path]:
    """Temp files a crashed writer left behind. Their records were never committed to Kafka,
    so they come again and deleting the files loses nothing."""
    for day in list_dates(root):
        for entry in date_dir(root, day).iterdir():
            if entry.name.startswith(".part-") and entry.name.endswith(_TEMP_SUFFIX):
                yield entry
