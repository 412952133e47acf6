"""A sequence model's batch of sessions, served through retrieval instead of full-catalogue scores.

The candidate stage (``streamrec.rank.candidates``) needs two things of a source: its top-N per
session, and its score of every candidate any source proposed (the ranker's features hold each
source's score of each candidate). A full score matrix gives both. A model published with the
session contract gives them without one: the top-N from the item index, and a candidate's score as
the product of the session's vector with the candidate's row of the item table, which is the
score the full matrix would hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from streamrec.retrieval.ann import ItemIndex

__all__ = ["Retrieved", "Retriever"]


@runtime_checkable
class Retriever(Protocol):
    """A generator that can serve a batch through retrieval (``OnnxSessionRecommender``)."""

    n_items: int

    def retrieve(self, histories: Sequence[np.ndarray]) -> Retrieved: ...


@dataclass(frozen=True, eq=False)
class Retrieved:
    """``sessions`` (B, d) float32, ``items`` (n_items + 1, d) float32 (row 0 is padding), and an
    index over ``items[1:]`` (its id ``j`` is item ``j + 1``)."""

    sessions: np.ndarray
    items: np.ndarray
    index: ItemIndex

    @property
    def n_items(self) -> int:
        return len(self.items) - 1

    def top(self, n: int, exclude: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(B, n)`` item indices and scores, best first, ``exclude[b]`` left out of row ``b``; index 0
        and -inf where fewer were found. ``n`` plus the longest exclusion are fetched, so that ``n``
        remain in every row whichever excluded items the index returns."""
        B = len(self.sessions)
        excluded = [np.asarray(e, dtype=np.int64).reshape(-1) for e in exclude] if exclude is not None else [
            np.zeros(0, np.int64)] * B
        fetch = min(n + max((len(e) for e in excluded), default=0), self.n_items)
        scores, ids = self.index.search(self.sessions, fetch)
        items = np.where(ids >= 0, ids + 1, 0)
        keep = (items > 0) & ~_member(items, excluded)
        order = np.argsort(~keep, axis=1, kind="stable")[:, :n]  # the kept ones first, in the index's order
        top_items = np.take_along_axis(items, order, axis=1)
        kept = np.take_along_axis(keep, order, axis=1)
        top_scores = np.where(kept, np.take_along_axis(scores, order, axis=1), -np.inf).astype(np.float32)
        out_items = np.zeros((B, n), np.int64)
        out_scores = np.full((B, n), -np.inf, np.float32)
        width = top_items.shape[1]
        out_items[:, :width], out_scores[:, :width] = np.where(kept, top_items, 0), top_scores
        return out_items, out_scores

    def at(self, items: np.ndarray) -> np.ndarray:
        """``(B, C)`` float32 scores of ``items`` (B, C), row ``b`` for session ``b``."""
        return np.einsum("bd,bcd->bc", self.sessions, self.items[items], dtype=np.float32)


def _member(items: np.ndarray, excluded: Sequence[np.ndarray]) -> np.ndarray:
    """``(B, K)`` bool: whether ``items[b, j]`` is in ``excluded[b]``."""
    lengths = np.array([len(e) for e in excluded])
    if not lengths.sum():
        return np.zeros(items.shape, dtype=bool)
    V = int(max(items.max(initial=0), max(int(e.max(initial=0)) for e in excluded))) + 1
    keys = np.repeat(np.arange(len(excluded)), lengths) * V + np.concatenate(excluded)
    return np.isin(np.arange(len(items))[:, None] * V + items, keys)
