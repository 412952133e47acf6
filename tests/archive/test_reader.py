from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.archive.reader import archive_stats, read_archive
from streamrec.archive.writer import ArchiveWriter
from streamrec.errors import ConfigError
from streamrec.events.schema import ClickEvent
from tests.archive.helpers import DAY_MS, T0, event


def test_events_come_back_sorted_by_time_with_their_fields(tmp_path: Path) -> None:
    with ArchiveWriter(tmp_path) as writer:
        writer.write("p1", [(0, event(2)), (1, event(0, ts=T0 + DAY_MS))])
        writer.write("p0", [(0, event(1)), (1, ClickEvent("u", "s9", "i", "purchase", T0 + 5, "user-3"))])
    frame = read_archive(tmp_path)
    assert frame["event_id"].tolist() == ["e1", "e2", "u", "e0"]
    assert list(frame.columns) == ["event_id", "session_id", "user_id", "item_id", "event_type", "timestamp"]
    assert frame.iloc[2].to_dict() == {"event_id": "u", "session_id": "s9", "user_id": "user-3", "item_id": "i",
                                       "event_type": "purchase", "timestamp": T0 + 5}
    assert frame["timestamp"].dtype == "int64"


def test_since_days_counts_back_from_the_newest_date(tmp_path: Path) -> None:
    with ArchiveWriter(tmp_path) as writer:
        writer.write("p0", [(i, event(i, ts=T0 + i * DAY_MS)) for i in range(5)])
    assert read_archive(tmp_path, since_days=2)["event_id"].tolist() == ["e3", "e4"]
    assert len(read_archive(tmp_path, since_days=99)) == 5
    with pytest.raises(ConfigError):
        read_archive(tmp_path, since_days=0)


def test_an_id_reused_under_another_date_is_read_once(tmp_path: Path) -> None:
    with ArchiveWriter(tmp_path) as writer:
        writer.write("p0", [(0, event(1)), (1, event(1, ts=T0 + DAY_MS))])
    frame = read_archive(tmp_path)
    assert frame["timestamp"].tolist() == [T0 + 1]


def test_an_empty_or_missing_archive_reads_as_no_events(tmp_path: Path) -> None:
    assert read_archive(tmp_path / "nothing").empty
    assert read_archive(tmp_path, columns=["session_id"]).columns.tolist() == ["session_id"]
    assert archive_stats(tmp_path).events == 0


def test_stats_count_dates_files_events_and_distinct_ids(tmp_path: Path) -> None:
    with ArchiveWriter(tmp_path) as writer:
        writer.write("p0", [(0, event(0, session="a")), (1, event(1, session="b")),
                            (2, event(2, ts=T0 + DAY_MS, session="a"))])
        writer.write("p1", [(0, event(3, session="c"))])
    stats = archive_stats(tmp_path)
    assert (len(stats.dates), stats.files, stats.events, stats.sessions, stats.items) == (2, 3, 4, 3, 4)
    assert [d.events for d in stats.dates] == [3, 1] and stats.bytes > 0
