"""Candidate generation: the union of every source's top-N, with each source's evidence kept.

Every generator scores the whole catalogue (the ``Recommender`` contract), so for each
candidate we know every source's score, not only the proposers'; the rank, though, is known
only inside a source's top-N, which is all the ranker needs ("proposed, and how high").

Candidates of a row are ordered by their best rank over the sources, ties by item index, so the
layout is deterministic. Rows are padded with item 0 to the batch's largest union.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streamrec.models.base import top_k

__all__ = ["Candidates", "union_top_n"]


@dataclass(frozen=True, eq=False)
class Candidates:
    """Candidate lists for a batch of histories; ``C`` is the longest union in the batch."""

    sources: tuple[str, ...]
    items: np.ndarray  # int64 (B, C); 0 pads a row whose union is shorter
    scores: np.ndarray  # float32 (B, C, S): each source's raw score of the item (0 on padding)
    ranks: np.ndarray  # int32 (B, C, S): 1-based rank in the source's top-N, 0 when it did not propose it

    @property
    def mask(self) -> np.ndarray:
        """bool (B, C): real candidates."""
        return self.items > 0

    def proposed_by(self, row: int, col: int) -> tuple[str, ...]:
        return tuple(s for s, r in zip(self.sources, self.ranks[row, col], strict=True) if r > 0)

    def recall(self, targets: np.ndarray) -> float:
        """Share of rows whose target is among their candidates: the ceiling of any ranker."""
        if not len(targets):
            return float("nan")
        return float((self.items == np.asarray(targets)[:, None]).any(axis=1).mean())


def union_top_n(
    scores: Mapping[str, np.ndarray],
    n_per_source: Mapping[str, int],
    exclude: Sequence[np.ndarray] | None = None,
) -> Candidates:
    """The union of each source's top ``n_per_source[s]`` items per row, ``exclude[i]`` left out.

    ``scores[s]`` is source ``s``'s ``(B, n_items + 1)`` matrix. A source with N = 0 contributes
    features but proposes nothing.
    """
    sources = tuple(scores)
    if not sources:
        raise ValueError("candidate generation needs at least one source")
    B, V = next(iter(scores.values())).shape
    rank = np.zeros((len(sources), B, V), dtype=np.int32)  # (S, B, V) 1-based, 0 = not proposed
    for s, name in enumerate(sources):
        n = int(n_per_source.get(name, 0))
        if n <= 0:
            continue
        idx, vals = top_k(scores[name], n, exclude)
        finite = np.isfinite(vals)
        rows = np.repeat(np.arange(B), idx.shape[1])[finite.ravel()]
        rank[s, rows, idx[finite]] = (np.tile(np.arange(1, idx.shape[1] + 1), B)[finite.ravel()])
    proposed = rank > 0
    best = np.where(proposed, rank, np.iinfo(np.int32).max).min(axis=0)  # (B, V)
    any_source = proposed.any(axis=0)  # (B, V)
    width = max(int(any_source.sum(axis=1).max(initial=0)), 1)
    # order by (not proposed, best rank, item): candidates first, best first, deterministic
    key = np.where(any_source, best.astype(np.int64) * V + np.arange(V)[None, :], np.iinfo(np.int64).max)
    order = np.argsort(key, axis=1, kind="stable")[:, :width]  # (B, C)
    real = np.take_along_axis(any_source, order, axis=1)
    items = np.where(real, order, 0).astype(np.int64)
    rows = np.arange(B)[:, None]
    cand_scores = np.stack([np.asarray(scores[name], dtype=np.float32)[rows, items] for name in sources], axis=-1)
    cand_scores = np.where(real[..., None] & np.isfinite(cand_scores), cand_scores, 0.0).astype(np.float32)
    cand_ranks = np.moveaxis(rank[:, rows, items], 0, -1) * real[..., None]  # (B, C, S)
    return Candidates(sources, items, cand_scores, cand_ranks.astype(np.int32))
