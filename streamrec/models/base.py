"""What every candidate generator offers: ``fit`` on training sequences, ``score`` the catalogue.

The contract is deliberately small so that evaluation, the ranking pipeline and the server
treat a popularity counter, a kNN index and a neural network the same way:

- items are contiguous integers ``1..n_items`` (``0`` is padding and never recommended);
- ``score`` takes a batch of histories (the session prefix, or the user's history) and returns
  a dense ``(B, n_items + 1)`` float32 matrix over the **whole catalogue**; column 0 is ``-inf``;
- ``recommend`` is the top-k of ``score`` with the history excluded when asked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # a server scores with these models and never builds training data: no pandas there
    import pandas as pd

__all__ = ["Recommender", "TrainData", "first_k", "top_k"]


@dataclass(frozen=True, eq=False)
class TrainData:
    """Training input shared by every model.

    ``sequences[i]`` are the item indices of one training sequence (a user's history under the
    leave-one-out protocol, a session under the session protocol) in time order, and
    ``timestamps[i]`` their times in seconds. ``items`` holds metadata indexed by ``item_idx``
    (columns ``item_idx``, ``title``, ``year``, ``genres`` as a '|'-joined string).
    """

    sequences: Sequence[np.ndarray]
    timestamps: Sequence[np.ndarray]
    n_items: int
    items: pd.DataFrame


@runtime_checkable
class Recommender(Protocol):
    name: str

    def fit(self, data: TrainData) -> Recommender: ...

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """``(len(histories), n_items + 1)`` float32 scores; higher is better; column 0 is -inf."""
        ...


def top_k(scores: np.ndarray, k: int, exclude: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise top-``k`` item indices and scores, best first, with ``exclude[i]`` masked out.

    Ties are broken by the lower item index, so results are deterministic.
    """
    negated = np.negative(scores, dtype=np.float32)  # a fresh array, so masking touches no caller's data
    negated[:, 0] = np.inf
    if exclude is not None:
        lengths = [len(items) for items in exclude]
        if sum(lengths):
            cols = np.concatenate([np.asarray(items, dtype=np.int64).reshape(-1) for items in exclude])
            negated[np.repeat(np.arange(len(lengths)), lengths), cols] = np.inf
    idx = first_k(negated, min(k, negated.shape[1] - 1))
    return idx, -np.take_along_axis(negated, idx, axis=1)


_SAMPLE_STRIDE = 8  # ``first_k`` estimates a row's threshold from every 8th key


def first_k(keys: np.ndarray, k: int) -> np.ndarray:
    """Columns of each row's ``k`` smallest keys, smallest first, ties by the lower column: exactly
    ``np.argsort(keys, axis=1, kind="stable")[:, :k]``.

    Why not that sort, or ``argpartition``: on a 3,700-item row introselect costs about 40 µs, and the
    six top-50s of a batch of 32 sessions were a third of the served pipeline's CPU. It also picks
    arbitrarily among keys tied at the k-th place. Here a threshold is taken from every eighth key (a
    partition of an eighth of the row, at a rank that leaves about 1.5k survivors in the whole row),
    and the survivors, in column order, get a small stable sort. A row left with fewer than ``k``
    survivors (an unlucky sample, NaNs) is sorted whole, so the result is exact whatever the sample.
    """
    B, V = keys.shape
    rank = -(-3 * k // (2 * _SAMPLE_STRIDE)) + 2
    sample = keys[:, ::_SAMPLE_STRIDE]
    if B == 0 or k == 0 or rank >= sample.shape[1]:
        return np.argsort(keys, axis=1, kind="stable")[:, :k]
    threshold = np.partition(sample, rank - 1, axis=1)[:, rank - 1:rank]
    flat = np.flatnonzero(keys <= threshold)  # row-major: each row's survivors in column order
    rows = flat // V
    counts = np.bincount(rows, minlength=B)
    width = max(int(counts.max()), k)
    pos = np.arange(len(flat)) - np.repeat(np.cumsum(counts) - counts, counts)
    # padding after a row's survivors, +inf: a stable sort keeps it behind any real +inf key
    padded = np.full((B, width), np.inf, dtype=keys.dtype)
    padded[rows, pos] = keys.ravel()[flat]
    cols = np.zeros((B, width), dtype=np.int64)
    cols[rows, pos] = flat - rows * V
    idx = np.take_along_axis(cols, np.argsort(padded, axis=1, kind="stable")[:, :k], axis=1)
    short = np.flatnonzero(counts < k)
    if len(short):
        idx[short] = np.argsort(keys[short], axis=1, kind="stable")[:, :k]
    return idx
