"""A dataset in memory, whatever its source: interactions, an item table and a vocabulary.

MovieLens (``movielens``) and snapshots of the event archive (``snapshots``) both produce a
``MovieLens`` through ``build``, so every protocol, trainer and evaluator works on either.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd

__all__ = ["PAD", "Malformed", "MovieLens", "build"]

logger = logging.getLogger(__name__)

#: vocab[0]; item index 0 is reserved for padding in fixed-length session tensors.
PAD: Final = "<pad>"


@dataclass(frozen=True)
class Malformed:
    """One row that was kept out of the data: ``file`` is "inter" or "item", ``line`` is 1-based (header = 1)."""

    file: str
    line: int
    reason: str
    raw: str


@dataclass(frozen=True, eq=False)
class MovieLens:
    """A parsed dataset (named after its first source; snapshots have the same shape).

    ``interactions``: user_id (str), item_id (str, as shipped), item_idx (int32, 1..n_items),
    rating (int8, 1..5), timestamp (int64, seconds); sorted by timestamp, ties in file order.
    ``items``: one row per vocab entry, ordered by item_idx: item_id, item_idx, title (str, may be
    missing), year (Int16, nullable), genres (str, '|'-joined e.g. "Animation|Comedy"; "" when
    unknown; a string rather than a list so it round-trips through Parquet unchanged).
    ``vocab[idx]`` is the item_id of ``idx``; ``vocab[0] == PAD``. Items are numbered in order of
    first interaction, so only items that were interacted with are in the vocab.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    vocab: list[str]
    malformed: list[Malformed]

    @property
    def n_items(self) -> int:
        return len(self.vocab) - 1


def build(inter: pd.DataFrame, items: pd.DataFrame, malformed: Sequence[Malformed] = ()) -> MovieLens:
    """Sort interactions by time (stable, so ties keep file order), number items 1..n in order of
    first interaction, and attach each vocab item's metadata (missing metadata stays missing)."""
    order = np.argsort(inter["timestamp"].to_numpy(), kind="stable")
    inter = inter.iloc[order].reset_index(drop=True)
    codes, uniques = pd.factorize(inter["item_id"])
    inter.insert(2, "item_idx", (codes + 1).astype(np.int32))
    vocab_ids = pd.Series(uniques, dtype="str", name="item_id")
    table = pd.DataFrame({"item_id": vocab_ids, "item_idx": np.arange(1, len(vocab_ids) + 1, dtype=np.int32)})
    table = table.merge(items, how="left", on="item_id", validate="one_to_one")
    table["genres"] = table["genres"].fillna("")
    unknown = int(table["title"].isna().sum())
    if unknown:
        logger.warning("%s interacted items have no row in the item file; their metadata is missing", unknown)
    unrated = len(items) - (len(table) - unknown)
    if unrated:
        logger.info("%s catalogue items have no interactions and are left out of the vocab", unrated)
    return MovieLens(inter, table, [PAD, *vocab_ids.tolist()], list(malformed))
