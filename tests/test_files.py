"""``write_atomic``: a reader on another process sees the old text or the new one, never a part,
and a failed write leaves the old file and no temp file behind; ``fsync_tree``: everything under a
directory, and its name, made durable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streamrec.files import fsync_tree, write_atomic


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The paths ``os.fsync`` is called on, in order."""
    paths: list[Path] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        paths.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return paths


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


def test_the_rename_is_made_durable_too(tmp_path: Path, synced: list[Path]) -> None:
    seen: list[Path] = []
    write_atomic(tmp_path / "CURRENT", "v1\n", before_replace=seen.append)
    (temp,) = seen
    assert temp.parent == tmp_path and temp.name.startswith(".CURRENT.")
    assert synced == [temp, tmp_path]  # the text, then the directory holding the new name


def test_a_tree_is_synced_files_and_directories_and_its_own_name(tmp_path: Path, synced: list[Path]) -> None:
    version = tmp_path / "sasrec" / "v1"
    (version / "sub").mkdir(parents=True)
    for path in (version / "model.onnx", version / "manifest.json", version / "sub" / "x"):
        path.write_text("x")
    fsync_tree(version)
    assert set(synced) == {version / "model.onnx", version / "manifest.json", version / "sub" / "x",
                           version, version / "sub", version.parent}
    assert synced[-1] == version.parent
