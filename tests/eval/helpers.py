"""Helpers shared by the evaluation tests and the peer benchmark's tests: tiny hand-made MovieLens logs."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from streamrec.data.base import MovieLens, build


def make_log(rows: Sequence[tuple[str, str, int]]) -> MovieLens:
    """A MovieLens from ``(user_id, item_id, timestamp)`` rows in file order, built as ``load`` does
    (sorted by time, ties in file order, items numbered by first interaction)."""
    users, items, stamps = zip(*rows, strict=True)
    inter = pd.DataFrame({
        "user_id": pd.Series(users, dtype="str"),
        "item_id": pd.Series(items, dtype="str"),
        "rating": np.full(len(rows), 4, dtype=np.int8),
        "timestamp": np.array(stamps, dtype=np.int64),
    })
    names = sorted(set(items))
    table = pd.DataFrame({
        "item_id": pd.Series(names, dtype="str"),
        "title": pd.Series(names, dtype="str"),
        "year": pd.array([2000] * len(names), dtype="Int16"),
        "genres": pd.Series(["Drama"] * len(names), dtype="str"),
    })
    return build(inter, table)


def item_ids(data: MovieLens, seq: np.ndarray) -> list[str]:
    """The item ids of a sequence of item indices, for readable assertions."""
    return [data.vocab[i] for i in seq]
