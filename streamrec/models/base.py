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

__all__ = ["Recommender", "TrainData", "top_k"]


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
    k = min(k, negated.shape[1] - 1)
    part = np.argpartition(negated, k - 1, axis=1)[:, :k]
    order = np.lexsort((part, np.take_along_axis(negated, part, axis=1)), axis=1)
    idx = np.take_along_axis(part, order, axis=1)
    return idx, -np.take_along_axis(negated, idx, axis=1)
