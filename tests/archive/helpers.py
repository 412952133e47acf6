"""Events and raw reads for the archive tests."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from streamrec.archive.layout import date_dir, list_dates, list_parts
from streamrec.events.schema import ClickEvent

DAY_MS = 86_400_000
T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def event(i: int, ts: int | None = None, session: str = "s1") -> ClickEvent:
    return ClickEvent(f"e{i}", session, f"item-{i % 7}", "click", T0 + i if ts is None else ts, None)


def raw_event_ids(root: Path) -> list[str]:
    """Every event id in every published file, duplicates included (``read_archive`` would drop them)."""
    ids: list[str] = []
    for day in list_dates(root):
        for part in list_parts(date_dir(root, day)):
            ids += pq.read_table(part, columns=["event_id"]).column("event_id").to_pylist()
    return ids
