"""File writes that readers on other processes may race with, and that must survive a crash."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["fsync_dir", "fsync_tree", "write_atomic"]


def fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (names created, renamed or removed in it) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Make every file and directory under ``path``, and ``path``'s own name in its parent, durable
    (a version directory before a pointer names it)."""
    path = Path(path)
    for root, dirs, files in os.walk(path):
        for name in files:
            fd = os.open(Path(root) / name, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(root))
    fsync_dir(path.parent)


def write_atomic(path: Path, text: str, *, before_replace: Callable[[Path], None] | None = None) -> None:
    """Replace ``path`` whole, durably: readers see the old text or the new, never a part (pointers,
    manifests), and after a crash the file holds one of them. ``before_replace(temp)`` runs once the
    temp file is written and fsync'd, before the rename: a crash seam for tests."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if before_replace is not None:
            before_replace(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)  # the rename itself
