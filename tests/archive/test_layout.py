from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from streamrec.archive.layout import PartName, date_dir, date_of, leftover_temp_files, list_dates, list_parts


def test_part_names_round_trip_and_foreign_names_are_not_parts() -> None:
    for name in (PartName("p3", 120, 245), PartName("seed", 0, 0), PartName("p0", 5, 9, copy=2)):
        assert PartName.parse(name.filename) == name
        assert PartName.parse(name.temp_filename) is None
    assert PartName("p3", 120, 245).filename == "part-p3-120-245.parquet"
    for foreign in ("part-p3-1.parquet", "notes.txt", "part-P3-1-2.parquet", "_SUCCESS"):
        assert PartName.parse(foreign) is None


def test_bad_part_names_are_refused() -> None:
    with pytest.raises(ValueError):
        PartName("p-3", 1, 2)
    with pytest.raises(ValueError):
        PartName("p3", 5, 4)


def test_dates_are_utc_dates_of_millisecond_timestamps() -> None:
    assert date_of(0) == date(1970, 1, 1)
    assert date_of(86_400_000 - 1) == date(1970, 1, 1)
    assert date_of(86_400_000) == date(1970, 1, 2)
    assert date_of(978_307_199_000) == date(2000, 12, 31)  # 23:59:59 UTC, whatever the local zone


def test_listing_ignores_foreign_entries_and_finds_leftover_temp_files(tmp_path: Path) -> None:
    day = date(2000, 12, 31)
    folder = date_dir(tmp_path, day)
    folder.mkdir()
    (tmp_path / "date=garbage").mkdir()
    (tmp_path / "README").write_text("x")
    part, temp = PartName("p1", 3, 8), PartName("p1", 9, 12)
    (folder / part.filename).write_bytes(b"")
    (folder / temp.temp_filename).write_bytes(b"")
    (folder / "notes.txt").write_text("x")
    assert folder.name == "date=2000-12-31"
    assert list_dates(tmp_path) == [day]
    assert list_parts(folder) == [folder / part.filename]
    assert list(leftover_temp_files(tmp_path)) == [folder / temp.temp_filename]
