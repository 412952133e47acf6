"""A sequence model as a ``Recommender``, whatever runs it: histories in, full-catalogue scores out.

The scoring function is pluggable, ``(B, T) int64 -> (B, n_items + 1)``, so one adapter serves a
torch module (``streamrec.train.adapter``) and an onnxruntime session (``streamrec.export``) alike,
and both are evaluated by the same code. It needs numpy alone, so a server that runs ONNX never
imports torch or the trainer.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from streamrec.errors import ConfigError
from streamrec.models.base import TrainData
from streamrec.models.recommend import clean_histories

__all__ = ["ScoreFn", "SequenceRecommender", "left_pad"]

ScoreFn = Callable[[np.ndarray], np.ndarray]


def left_pad(sequences: Sequence[np.ndarray], length: int) -> np.ndarray:
    """``(len(sequences), length)`` int64: the last ``length`` items of each, left-padded with 0."""
    out = np.zeros((len(sequences), length), dtype=np.int64)
    for row, seq in enumerate(sequences):
        tail = np.asarray(seq, dtype=np.int64)[-length:] if length else np.zeros(0, np.int64)
        if len(tail):
            out[row, length - len(tail):] = tail
    return out


class SequenceRecommender:
    """Pads histories (unknown ids and 0 dropped, the last ``max_len`` kept, left-padded to the
    batch's longest), scores them ``batch_size`` at a time and masks column 0 with -inf."""

    def __init__(self, score_fn: ScoreFn, n_items: int, max_len: int, *, name: str = "sequence",
                 batch_size: int = 256) -> None:
        if n_items < 1 or max_len < 1 or batch_size < 1:
            raise ConfigError(f"n_items, max_len and batch_size must be positive, "
                              f"got {n_items}, {max_len}, {batch_size}")
        self.score_fn = score_fn
        self.n_items = n_items
        self.max_len = max_len
        self.name = name
        self.batch_size = batch_size

    def fit(self, data: TrainData) -> SequenceRecommender:
        """Already trained: only checks that the catalogue matches."""
        if data.n_items != self.n_items:
            raise ValueError(f"model was trained for {self.n_items} items, data has {data.n_items}")
        return self

    def pad(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """``(B, T)`` int64 model input, ``1 <= T <= max_len``."""
        clean = [h[-self.max_len:] for h in clean_histories(histories, self.n_items)]
        longest = max((len(h) for h in clean), default=0)
        return left_pad(clean, max(1, longest))

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(histories), self.n_items + 1), dtype=np.float32)
        for lo in range(0, len(histories), self.batch_size):
            chunk = histories[lo:lo + self.batch_size]
            scores = np.asarray(self.score_fn(self.pad(chunk)), dtype=np.float32)
            if scores.shape != (len(chunk), self.n_items + 1):
                raise ValueError(f"scoring function returned {scores.shape}, expected ({len(chunk)}, {self.n_items + 1})")
            out[lo:lo + len(chunk)] = scores
        out[:, 0] = -np.inf
        return out
