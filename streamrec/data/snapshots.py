"""Datasets made from archived click events, frozen so a model's data can be rebuilt exactly.

The retrainer turns the event archive into a ``MovieLens``-shaped dataset, so every trainer,
protocol and evaluator works on it unchanged, and freezes it as a *snapshot*: the same Parquet
layout as the MovieLens cache, under ``<data_dir>/snapshots/<name>/``. A model trained on it names
the snapshot as its dataset, and a server rebuilds the split (and refits the count-based
generators) from it: the snapshot folder must therefore be reachable by the servers, like the
registry. Snapshots hold data only (Parquet and JSON), never code.

Item numbering follows ``base.build``: items in order of first click, so an item new since
the last snapshot gets a new index, and models carry their vocabulary by item id, not by index.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from streamrec.data.base import MovieLens, build
from streamrec.data.cache import read_cache, read_meta, write_cache
from streamrec.data.names import SNAPSHOT_PREFIX
from streamrec.errors import DataError

__all__ = ["events_to_dataset", "load_snapshot", "snapshot_meta", "snapshot_name", "write_snapshot"]

_ITEM_COLUMNS: Final = ("item_id", "title", "year", "genres")


def events_to_dataset(events: pd.DataFrame, catalog: pd.DataFrame | None = None) -> MovieLens:
    """Clicks (``session_id``, ``item_id``, ``timestamp`` in ms, optional ``user_id``) as a dataset.

    The user of a click is its ``user_id``, or its session when it has none: the session protocol
    cuts each user's clicks into sessions at idle gaps itself. ``catalog`` (``item_id``, ``title``,
    ``genres``, optional ``year``) gives metadata; items it lacks get their id as title and no genres.
    """
    if events.empty:
        raise DataError("no events to build a dataset from: archive some clicks first")
    user = events["user_id"] if "user_id" in events else pd.Series(None, index=events.index, dtype="object")
    inter = pd.DataFrame({
        "user_id": user.where(user.notna() & (user != ""), events["session_id"]).astype(str),
        "item_id": events["item_id"].astype(str),
        "rating": np.full(len(events), 5, dtype=np.int8),  # a click carries no rating
        "timestamp": (events["timestamp"].to_numpy(np.int64) // 1000),
    })
    items = _catalog_for(inter["item_id"].unique(), catalog)
    return build(inter, items)


def _catalog_for(item_ids: np.ndarray, catalog: pd.DataFrame | None) -> pd.DataFrame:
    known = pd.DataFrame(columns=list(_ITEM_COLUMNS)) if catalog is None else catalog.reindex(columns=_ITEM_COLUMNS)
    known = known.drop_duplicates("item_id")
    missing = pd.Index(item_ids).difference(known["item_id"])
    fresh = pd.DataFrame({"item_id": missing, "title": missing, "year": pd.NA, "genres": ""})
    items = pd.concat([known, fresh], ignore_index=True) if len(known) else fresh
    items["year"] = pd.to_numeric(items["year"], errors="coerce").astype("Int16")
    items["genres"] = items["genres"].fillna("").astype(str)
    items["title"] = items["title"].fillna(items["item_id"]).astype(str)
    return items


def snapshot_name(data: MovieLens) -> str:
    """A name from the content: the same events give the same snapshot."""
    digest = hashlib.sha256()
    digest.update(pd.util.hash_pandas_object(data.interactions[["user_id", "item_id", "timestamp"]], index=False)
                  .to_numpy().tobytes())
    digest.update("\x00".join(data.vocab).encode())
    return f"{SNAPSHOT_PREFIX}{digest.hexdigest()[:16]}"


def write_snapshot(data: MovieLens, data_dir: Path, meta: Mapping[str, object]) -> str:
    """Freeze ``data`` under ``<data_dir>/snapshots/<name>/`` (written before its meta.json, so a
    half-written snapshot is never read); ``meta`` is kept with it (e.g. ``test_days``). Returns the name."""
    name = snapshot_name(data)
    folder = Path(data_dir) / "snapshots" / name
    if (folder / "meta.json").is_file():
        return name
    write_cache(data, folder, {"snapshot": name, **meta})
    return name


def snapshot_meta(dataset: str, data_dir: Path) -> dict[str, object]:
    try:
        return read_meta(Path(data_dir) / "snapshots" / dataset)
    except FileNotFoundError:
        raise DataError(f"no snapshot {dataset} under {Path(data_dir) / 'snapshots'}: the models name a dataset "
                        "this machine lacks; point STREAMREC_DATA_DIR at the trainer's data folder") from None


def load_snapshot(dataset: str, data_dir: Path) -> MovieLens:
    meta = snapshot_meta(dataset, data_dir)
    data = read_cache(Path(data_dir) / "snapshots" / dataset, meta)
    if data is None:
        raise DataError(f"snapshot {dataset} under {data_dir} is unreadable")
    return data
