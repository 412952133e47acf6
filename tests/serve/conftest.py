"""Fixtures of the serving tests. The trained registry and ``server_factory`` are in ``tests/conftest.py``:
the stream, bench and retrain tests start servers too."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


@pytest.fixture
def registry(trained_registry: Path, tmp_path: Path) -> Path:
    """A copy of the trained registry that a test may change."""
    return Path(shutil.copytree(trained_registry, tmp_path / "registry"))
