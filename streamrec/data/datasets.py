"""Load any dataset by name (``names``): a MovieLens dataset or a snapshot of the event archive."""

from __future__ import annotations

from pathlib import Path

from streamrec.data.base import MovieLens
from streamrec.data.movielens import load as load_movielens
from streamrec.data.names import DatasetName, check_dataset, is_snapshot
from streamrec.data.snapshots import load_snapshot

__all__ = ["load"]


def load(dataset: DatasetName, data_dir: Path, *, refresh: bool = False) -> MovieLens:
    """Load any dataset: MovieLens from its Parquet cache (``refresh`` re-parses the raw files), a
    snapshot from its folder (``refresh`` does not apply: a snapshot is frozen). An unknown name is
    a ``ConfigError`` that lists the choices."""
    if is_snapshot(check_dataset(dataset)):
        return load_snapshot(dataset, data_dir)
    return load_movielens(dataset, data_dir, refresh=refresh)
