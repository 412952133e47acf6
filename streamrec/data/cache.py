"""A dataset frozen as files: two Parquet tables and three JSON files in one folder.

The MovieLens cache (``<data_dir>/cache/<name>/``) and snapshots (``<data_dir>/snapshots/<name>/``)
share this layout. ``meta.json`` is written last and must equal what the reader expects, so a
folder written by another parser version, or only half written, is never read back.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from streamrec.data.base import Malformed, MovieLens

__all__ = ["read_cache", "read_meta", "replace_file", "write_cache"]

logger = logging.getLogger(__name__)


def write_cache(data: MovieLens, folder: Path, meta: Mapping[str, object]) -> None:
    """Write every file under a temporary name, then meta.json last: a folder without a matching
    meta.json is ignored, so an interrupted write is never read back."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "meta.json").unlink(missing_ok=True)
    for name, frame in (("interactions", data.interactions), ("items", data.items)):
        tmp = folder / f"{name}.parquet.tmp"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, folder / f"{name}.parquet")
    replace_file(folder / "vocab.json", _json(data.vocab))
    replace_file(folder / "malformed.json", _json([asdict(m) for m in data.malformed]))
    replace_file(folder / "meta.json", _json(dict(meta)))


def read_cache(folder: Path, meta: Mapping[str, object]) -> MovieLens | None:
    """The dataset in ``folder`` when its meta.json equals ``meta``; None when it is missing, stale or
    unreadable (the caller rebuilds it)."""
    try:
        if read_meta(folder) != meta:
            logger.info("cache in %s is stale; rebuilding", folder)
            return None
        return MovieLens(
            pd.read_parquet(folder / "interactions.parquet"),
            pd.read_parquet(folder / "items.parquet"),
            json.loads((folder / "vocab.json").read_bytes()),
            [Malformed(**m) for m in json.loads((folder / "malformed.json").read_bytes())],
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:  # corrupt files: rebuild rather than fail
        logger.warning("cache in %s is unreadable (%s); rebuilding", folder, exc)
        return None


def read_meta(folder: Path) -> dict[str, object]:
    """The folder's meta.json; raises FileNotFoundError when there is none."""
    meta: dict[str, object] = json.loads((folder / "meta.json").read_bytes())
    return meta


def replace_file(path: Path, data: bytes) -> None:
    """Write under a temporary name, then rename: a reader never sees part of a file. Not fsynced:
    everything written here (raw copies, caches) can be made again."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _json(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")
