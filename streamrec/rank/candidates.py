"""Candidate generation: the union of every source's top-N, with each source's evidence kept.

Every generator scores the whole catalogue (the ``Recommender`` contract), or, served through
retrieval, scores any item it is asked about (``streamrec.retrieval.source``), so for each
candidate we know every source's score, not only the proposers'; the rank, though, is known
only inside a source's top-N, which is all the ranker needs ("proposed, and how high").

Candidates of a row are ordered by their best rank over the sources, ties by item index, so the
layout is deterministic. Rows are padded with item 0 to the batch's largest union.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streamrec.errors import ConfigError
from streamrec.models.base import top_k
from streamrec.retrieval.source import Retrieved

__all__ = ["Candidates", "union_top_n"]

_ROWS_PER_TOP_K = 16  # rows per stacked top-k call: enough to share its overhead, few enough to stay in cache


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

    def proposers(self, rows: np.ndarray | int, cols: np.ndarray) -> list[tuple[str, ...]]:
        """``proposed_by`` for several cells (``rows`` broadcast against ``cols``): each set of sources is
        named once, by its bits."""
        bits = (self.ranks[rows, cols] > 0).astype(np.int64) @ (1 << np.arange(len(self.sources), dtype=np.int64))
        names: dict[int, tuple[str, ...]] = {}
        for code in set(bits.tolist()):
            names[code] = tuple(s for i, s in enumerate(self.sources) if code >> i & 1)
        return [names[code] for code in bits.tolist()]

    def recall(self, targets: np.ndarray) -> float:
        """Share of rows whose target is among their candidates: the ceiling of any ranker."""
        if not len(targets):
            return float("nan")
        return float((self.items == np.asarray(targets)[:, None]).any(axis=1).mean())


def union_top_n(
    scores: Mapping[str, np.ndarray | Retrieved],
    n_per_source: Mapping[str, int],
    exclude: Sequence[np.ndarray] | None = None,
) -> Candidates:
    """The union of each source's top ``n_per_source[s]`` items per row, ``exclude[i]`` left out.

    ``scores[s]`` is source ``s``'s ``(B, n_items + 1)`` matrix, or a ``Retrieved`` batch (a sequence
    model served through its item index: its top-N from the index, its scores of the candidates by
    product). A source with N = 0 contributes features but proposes nothing.
    """
    sources = tuple(scores)
    if not sources:
        raise ConfigError("candidate generation needs at least one source")
    first = scores[sources[0]]
    B, V = (len(first.sessions), first.n_items + 1) if isinstance(first, Retrieved) else first.shape
    S = len(sources)
    # each proposal (row, item, rank, source) packed in one int64, so that plain sorts order them
    ns = {name: int(n_per_source.get(name, 0)) for name in sources}
    R = max(ns.values(), default=0) + 1  # ranks are 1..R-1
    codes: list[np.ndarray] = []  # per proposal: (row * V + item) * R + rank
    srcs: list[np.ndarray] = []

    def propose(group: Sequence[int], idx_all: np.ndarray, vals_all: np.ndarray) -> None:
        """Proposals of ``group``'s sources, their ``(len(group) B, n)`` top-N one source after another."""
        finite = np.isfinite(vals_all).ravel()
        row = np.tile(np.arange(B), len(group))[:, None]
        rank = np.arange(1, idx_all.shape[1] + 1)[None, :]
        codes.append(((row * V + idx_all) * R + rank).ravel()[finite])
        srcs.append(np.repeat(group, B * idx_all.shape[1])[finite])

    per_call = max(1, _ROWS_PER_TOP_K // max(B, 1))
    for n in sorted({n for n in ns.values() if n > 0}):
        same_n = [(s, name) for s, name in enumerate(sources) if ns[name] == n]
        for s, name in same_n:
            source = scores[name]
            if isinstance(source, Retrieved):
                propose([s], *source.top(n, exclude))
        matrices = [(s, name) for s, name in same_n if not isinstance(scores[name], Retrieved)]
        for lo in range(0, len(matrices), per_call):
            group = matrices[lo:lo + per_call]
            # one top-k over the stacked rows of several sources: one selection call instead of one each
            propose([s for s, _ in group], *top_k(np.concatenate([scores[name] for _, name in group]), n,
                                                  None if exclude is None else list(exclude) * len(group)))
    code = np.concatenate(codes) if codes else np.zeros(0, dtype=np.int64)
    src = np.concatenate(srcs) if srcs else np.zeros(0, dtype=np.int64)
    # best rank of each (row, item): the first of its run once sorted
    order = np.argsort(code)
    ordered = code[order]
    first_of_run = np.ones(len(ordered), dtype=bool)
    first_of_run[1:] = ordered[1:] // R != ordered[:-1] // R
    run = np.cumsum(first_of_run) - 1  # each sorted proposal's (row, item)
    unique_pair, best = ordered[first_of_run] // R, ordered[first_of_run] % R
    # candidates by (row, best rank, item)
    key = (unique_pair // V * R + best) * V + unique_pair % V
    by_key = np.argsort(key)
    cand = key[by_key]
    cand_row, cand_item = cand // (R * V), cand % V
    per_row = np.bincount(cand_row, minlength=B)
    width = max(int(per_row.max(initial=0)), 1)
    col = np.arange(len(cand)) - np.repeat(np.cumsum(per_row) - per_row, per_row)
    items = np.zeros((B, width), dtype=np.int64)
    items[cand_row, col] = cand_item
    col_of_pair = np.empty(len(cand), dtype=np.int64)  # by position in unique_pair; no search, no (B, V) table
    col_of_pair[by_key] = col
    cand_ranks = np.zeros((B, width, S), dtype=np.int32)
    cand_ranks[ordered // R // V, col_of_pair[run], src[order]] = ordered % R
    real = items > 0
    flat = (np.arange(B)[:, None] * V + items).ravel()
    cand_scores = np.stack([scores[name].at(items) if isinstance(scores[name], Retrieved) else
                            np.asarray(scores[name], dtype=np.float32).reshape(-1).take(flat).reshape(B, width)
                            for name in sources], axis=-1)
    cand_scores = np.where(real[..., None] & np.isfinite(cand_scores), cand_scores, 0.0).astype(np.float32)
    return Candidates(sources, items, cand_scores, cand_ranks)
