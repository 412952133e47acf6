"""``write_atomic``: a reader on another process sees the old text or the new one, never a part,
and a failed write leaves the old file and no temp file behind."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.files import write_atomic


def test_the_file_is_replaced_whole_and_no_temp_file_remains(tmp_path: Path) -> None:
    target = tmp_path / "CURRENT"
    write_atomic(target, "v1\n")
    write_atomic(target, "v2\n")
    assert target.read_text() == "v2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["CURRENT"]


def test_a_failed_write_keeps_the_old_text(tmp_path: Path) -> None:
    target = tmp_path / "CURRENT"
    write_atomic(target, "v1\n")
    with pytest.raises(TypeError):
        write_atomic(target, b"not text")  # type: ignore[arg-type]
    assert target.read_text() == "v1\n" and [p.name for p in tmp_path.iterdir()] == ["CURRENT"]
