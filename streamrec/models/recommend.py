"""What every baseline shares: ``recommend`` on top of ``score``, history encoding, popularity back-fill.

Kept in one place so the baselines cannot drift apart on the details that evaluation and the
server rely on: which indices of a history count, how recency weights are laid out, what an
empty (cold-start) history scores, and that column 0 is always ``-inf``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import SupportsIndex, TypeVar, overload

import numpy as np
import scipy.sparse as sp

from streamrec.models.base import TrainData, top_k

__all__ = [
    "CleanHistories",
    "HistoryWeights",
    "RecommendMixin",
    "backfill",
    "clean_histories",
    "decayed_weights",
    "demote_history",
    "exponential_weights",
    "history_matrix",
    "history_weights",
    "item_counts",
]

#: Batches up to this many rows take ``HistoryWeights``' own products: a server's (``MicroBatcher``, 32)
_DIRECT_ROWS = 64

T = TypeVar("T")

#: Maps a history length ``L`` to ``L`` weights, oldest first.
PositionWeights = Callable[[int], np.ndarray]


class RecommendMixin(ABC):
    """Adds ``recommend`` to a model that has ``score``; the one place the top-k of a single history is taken."""

    @abstractmethod
    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """``(len(histories), n_items + 1)`` float32 scores; see ``base.Recommender``."""

    def recommend(self, history: np.ndarray, k: int, exclude_history: bool = True) -> list[tuple[int, float]]:
        """The ``k`` best ``(item_idx, score)`` pairs for one history, best first.

        Items scored ``-inf`` (padding, excluded history) are never returned, so fewer than ``k``
        pairs come back only when the catalogue runs out.
        """
        history = np.asarray(history, dtype=np.int64).reshape(-1)
        scores = self.score([history])
        if k < 1:
            return []
        seen = history[(history >= 0) & (history < scores.shape[1])]  # unknown items cannot be excluded
        idx, vals = top_k(scores, k, [seen] if exclude_history else None)
        return [(int(i), float(s)) for i, s in zip(idx[0], vals[0], strict=True) if np.isfinite(s)]


class CleanHistories(list[np.ndarray]):
    """What ``clean_histories`` returns: a list that remembers the catalogue it was cleaned for, so that
    the pipeline's generators, each cleaning what they are given, do not clean a served batch again."""

    def __init__(self, histories: list[np.ndarray], n_items: int) -> None:
        super().__init__(histories)
        self.n_items = n_items
        # what the generators derive from the batch alike (``decayed_weights``, ``demote_history``'s cells),
        # derived once: item-kNN and content weigh a session with the same decay, and four models demote it
        self.derived: dict[tuple[object, ...], object] = {}

    @overload
    def __getitem__(self, index: SupportsIndex) -> np.ndarray: ...

    @overload
    def __getitem__(self, index: slice) -> CleanHistories: ...

    def __getitem__(self, index: SupportsIndex | slice) -> np.ndarray | CleanHistories:
        """A slice is clean too (a generator scores a long batch in chunks)."""
        if isinstance(index, slice):
            return CleanHistories(super().__getitem__(index), self.n_items)
        return super().__getitem__(index)


def clean_histories(histories: Sequence[np.ndarray], n_items: int) -> CleanHistories:
    """Histories as int64 arrays holding only catalogue items, order kept.

    Padding (0) and indices the model never saw (a live session may click an item added after
    training) carry no signal, so they are dropped rather than raising in the middle of serving.
    """
    if isinstance(histories, CleanHistories) and histories.n_items == n_items:
        return histories
    out = []
    for h in histories:
        h = np.asarray(h, dtype=np.int64).reshape(-1)
        out.append(h[(h >= 1) & (h <= n_items)])
    return CleanHistories(out, n_items)


def exponential_weights(decay: float) -> PositionWeights:
    """Weights ``decay ** age`` where age is 0 for the latest item: the usual "recent counts more"."""

    def weigh(length: int) -> np.ndarray:
        return decay ** np.arange(length - 1, -1, -1, dtype=np.float64)

    return weigh


@dataclass(frozen=True, eq=False)
class HistoryWeights:
    """Position weights of a batch of histories as CSR arrays (``indptr`` (B + 1,), ``items`` sorted
    within each row, ``weights`` float64), with the products the models take of them.

    For the few rows of a served batch (up to ``_DIRECT_ROWS``) the products are computed here:
    scipy's construction and checks cost more than the arithmetic. Each output entry is the same
    float64 sum, added in the same order (a row's items ascending), as scipy's CSR product, so the
    results are equal bit for bit. Larger batches (training, evaluation) go to scipy, whose
    row-by-row accumulation stays in cache where one gather over the whole batch would not.
    """

    indptr: np.ndarray
    items: np.ndarray
    weights: np.ndarray
    n_cols: int

    def matrix(self) -> sp.csr_matrix:
        """``(B, n_cols)`` sparse."""
        return sp.csr_matrix((self.weights, self.items, self.indptr), shape=(len(self.indptr) - 1, self.n_cols))

    def times_csr(self, m: sp.csr_matrix) -> np.ndarray:
        """float64 ``(B, m.shape[1])``: ``self.matrix() @ m``, dense."""
        if len(self.indptr) - 1 > _DIRECT_ROWS:
            return (self.matrix() @ m).toarray()
        starts, stops = m.indptr[self.items], m.indptr[self.items + 1]
        counts = stops - starts
        at = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        rows = np.repeat(np.repeat(np.arange(len(self.indptr) - 1), np.diff(self.indptr)), counts)
        B, V = len(self.indptr) - 1, m.shape[1]
        return np.bincount(rows * V + m.indices[at], weights=np.repeat(self.weights, counts) * m.data[at],
                           minlength=B * V).astype(np.float64, copy=False).reshape(B, V)  # int64 when empty

    def times_dense(self, m: np.ndarray) -> np.ndarray:
        """float64 ``(B, m.shape[1])``: ``self.matrix() @ m``."""
        if len(self.indptr) - 1 > _DIRECT_ROWS:
            return np.asarray(self.matrix() @ m, dtype=np.float64)
        B, d = len(self.indptr) - 1, m.shape[1]
        rows = np.repeat(np.arange(B), np.diff(self.indptr))
        cells = (rows[:, None] * d + np.arange(d)[None, :]).ravel()  # item-major: each cell's terms in item order
        return np.bincount(cells, weights=(self.weights[:, None] * m[self.items]).ravel(),
                           minlength=B * d).astype(np.float64, copy=False).reshape(B, d)


def history_weights(histories: Sequence[np.ndarray], n_items: int, weigh: PositionWeights) -> HistoryWeights:
    """Each history's position weights over the catalogue; a repeated item keeps its largest weight.

    Taking the maximum rather than the sum keeps a re-clicked item from outweighing the rest,
    and with weights that grow towards the end it means "weight of the latest occurrence".
    """
    lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
    if not lengths.sum():
        return HistoryWeights(np.zeros(len(histories) + 1, dtype=np.int64), np.zeros(0, dtype=np.int64),
                              np.zeros(0), n_items + 1)
    rows = np.repeat(np.arange(len(histories)), lengths)
    items = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories])
    weights = np.concatenate([np.asarray(weigh(int(n)), dtype=np.float64) for n in lengths if n])
    order = np.lexsort((-weights, items, rows))  # by row, then item, the largest weight first
    first = np.ones(len(order), dtype=bool)
    first[1:] = (rows[order][1:] != rows[order][:-1]) | (items[order][1:] != items[order][:-1])
    keep = order[first]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows[keep], minlength=len(histories)))])
    return HistoryWeights(indptr, items[keep], weights[keep], n_items + 1)


def decayed_weights(histories: Sequence[np.ndarray], n_items: int, decay: float) -> HistoryWeights:
    """``history_weights`` with ``exponential_weights(decay)``, once per ``CleanHistories`` batch."""
    return _derived(histories, ("decayed_weights", n_items, decay),
                    lambda: history_weights(histories, n_items, exponential_weights(decay)))


def _derived(histories: Sequence[np.ndarray], key: tuple[object, ...], make: Callable[[], T]) -> T:
    """``make()``, kept in ``histories.derived`` under ``key`` when ``histories`` is a ``CleanHistories``."""
    if not isinstance(histories, CleanHistories):
        return make()
    if key not in histories.derived:
        histories.derived[key] = make()
    return histories.derived[key]  # type: ignore[return-value]


def history_matrix(histories: Sequence[np.ndarray], n_items: int, weigh: PositionWeights) -> sp.csr_matrix:
    """``(B, n_items + 1)`` sparse rows of ``history_weights``."""
    return history_weights(histories, n_items, weigh).matrix()


def demote_history(scores: np.ndarray, histories: Sequence[np.ndarray]) -> np.ndarray:
    """Move each row's history items below all its other items, in place; they stay finite, so rankable.

    A MovieLens user rates a movie once, so an item of the history is never the next one; when
    evaluation does not mask the history (the session protocol), a model that ranks those items
    high wastes its top slots. Models apply this unless their config says users return to items.
    """
    lengths = [len(h) for h in histories]
    if not sum(lengths):
        return scores
    rows, cols = _derived(histories, ("cells",), lambda: (np.repeat(np.arange(len(histories)), lengths),
                                                         np.concatenate(histories)))
    low = np.where(np.isfinite(scores), scores, np.inf).min(axis=1)
    scores[rows, cols] = (low - 1.0)[rows]
    return scores


def item_counts(data: TrainData) -> np.ndarray:
    """``(n_items + 1,)`` int64: how often each item occurs in the training sequences; index 0 stays 0.

    The one count of popularity, for every user of it: the baselines' cold-start fallback, SASRec's and
    GRU4Rec's negative sampling, and evaluation's Popularity@k. Integers, because they are counts
    (exact, and what ``metrics.popularity_percentiles`` ranks); callers that divide get floats anyway.
    Padding (0) and indices outside ``1..n_items`` are not items and are dropped, so a stray index can
    neither grow the array nor count as padding.
    """
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in data.sequences] or [np.zeros(0, np.int64)])
    flat = flat[(flat >= 1) & (flat <= data.n_items)]
    return np.bincount(flat, minlength=data.n_items + 1)


def backfill(scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Final float32 scores: items with evidence (score > 0) keep it; the rest rank by popularity below them.

    Neighbourhood scores are zero for most of the catalogue (and for the whole of it when the
    history is empty); ranking those zeros by training popularity, in ``[-1, 0)``, is the cold
    start fallback and a better tie-break than item index. Column 0 is set to ``-inf``.
    """
    pop = counts / (counts.max() + 1.0) - 1.0  # in [-1, 0)
    out = np.where(scores > 0, scores, pop[None, :]).astype(np.float32)
    out[:, 0] = -np.inf
    return out
