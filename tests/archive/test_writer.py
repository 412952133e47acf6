from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from streamrec.archive.layout import PartName, date_of, leftover_temp_files
from streamrec.archive.writer import ArchiveWriter
from streamrec.errors import ArchiveError
from tests.archive.helpers import DAY_MS, T0, event, raw_event_ids


class Crash(Exception):
    """Stands in for the process dying between the temp write and the rename."""


def test_one_file_per_date_named_after_the_first_and_last_offsets(tmp_path: Path) -> None:
    rows = [(10, event(0)), (11, event(1, ts=T0 + DAY_MS)), (12, event(2)), (14, event(3, ts=T0 + DAY_MS))]
    with ArchiveWriter(tmp_path) as writer:
        result = writer.write("p2", rows)
    day1, day2 = date_of(T0), date_of(T0 + DAY_MS)
    assert (result.written, result.duplicates) == (4, 0)
    assert result.files == [tmp_path / f"date={day1}" / "part-p2-10-12.parquet",
                            tmp_path / f"date={day2}" / "part-p2-11-14.parquet"]
    table = pq.read_table(result.files[0])
    assert table.column("event_id").to_pylist() == ["e0", "e2"]
    assert table.column("timestamp").to_pylist() == [T0, T0 + 2]
    assert table.column("user_id").to_pylist() == [None, None]


def test_events_already_archived_under_their_date_are_dropped(tmp_path: Path) -> None:
    with ArchiveWriter(tmp_path) as writer:
        writer.write("p0", [(0, event(0)), (1, event(1)), (2, event(1))])
        again = writer.write("p0", [(3, event(1)), (4, event(2))])
    assert (again.written, again.duplicates) == (1, 1)
    with ArchiveWriter(tmp_path) as writer:  # a new process reads the ids from disk
        assert writer.write("p0", [(0, event(0)), (5, event(2)), (6, event(3))]).written == 1
    assert sorted(raw_event_ids(tmp_path)) == ["e0", "e1", "e2", "e3"]


def test_a_crash_before_the_rename_leaves_a_temp_file_that_the_next_writer_deletes(tmp_path: Path) -> None:
    def crash(temp: Path) -> None:
        assert temp.exists() and temp.name.startswith(".part-")
        raise Crash

    writer = ArchiveWriter(tmp_path, before_publish=crash).open()
    with pytest.raises(Crash):
        writer.write("p0", [(0, event(0)), (1, event(1))])
    writer.close()
    assert len(list(leftover_temp_files(tmp_path))) == 1 and raw_event_ids(tmp_path) == []
    with ArchiveWriter(tmp_path) as writer:  # the records come again from Kafka
        assert list(leftover_temp_files(tmp_path)) == []
        assert writer.write("p0", [(0, event(0)), (1, event(1))]).written == 2
    assert sorted(raw_event_ids(tmp_path)) == ["e0", "e1"]


def test_a_published_file_is_never_replaced(tmp_path: Path) -> None:
    with ArchiveWriter(tmp_path) as writer:
        first = writer.write("p0", [(0, event(0)), (1, event(1))]).files[0]
        # the same offsets again with other events: a topic deleted and created under the same name
        second = writer.write("p0", [(0, event(7)), (1, event(8))]).files[0]
    assert first.name == "part-p0-0-1.parquet" and PartName.parse(second.name) == PartName("p0", 0, 1, copy=1)
    assert sorted(raw_event_ids(tmp_path)) == ["e0", "e1", "e7", "e8"]


def test_one_writer_per_archive(tmp_path: Path) -> None:
    with ArchiveWriter(tmp_path):
        with pytest.raises(ArchiveError, match="another archiver"):
            ArchiveWriter(tmp_path).open()
    with ArchiveWriter(tmp_path):
        pass  # the lock went with the first writer


def test_writing_needs_an_open_writer(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="not open"):
        ArchiveWriter(tmp_path).write("p0", [(0, event(0))])
