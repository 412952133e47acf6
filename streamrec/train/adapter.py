"""A trained sequence model as a ``Recommender``: histories in, full-catalogue float32 scores out.

The scoring function is pluggable, ``(B, T) int64 -> (B, n_items + 1)``, so one adapter serves a
torch module (``from_module``) and an onnxruntime session (``streamrec.export.load_onnx``) alike,
and both are evaluated by the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from streamrec.errors import ConfigError
from streamrec.models.base import TrainData
from streamrec.train.batches import left_pad

__all__ = ["ScoreFn", "TorchSequenceRecommender", "module_score_fn"]

ScoreFn = Callable[[np.ndarray], np.ndarray]


def module_score_fn(module: nn.Module, device: torch.device | str | None = None) -> ScoreFn:
    """``module.score`` under ``no_grad`` in eval mode, numpy in and out."""
    device = torch.device(device) if device is not None else next(module.parameters()).device

    @torch.no_grad()
    def score(seq: np.ndarray) -> np.ndarray:
        was_training = module.training
        module.eval()
        try:
            return module.score(torch.from_numpy(seq).to(device)).float().cpu().numpy()  # type: ignore[operator]
        finally:
            module.train(was_training)

    return score


class TorchSequenceRecommender:
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

    @classmethod
    def from_module(cls, module: nn.Module, n_items: int, max_len: int, *, name: str = "sequence",
                    device: torch.device | str | None = None, batch_size: int = 256) -> TorchSequenceRecommender:
        return cls(module_score_fn(module, device), n_items, max_len, name=name, batch_size=batch_size)

    def fit(self, data: TrainData) -> TorchSequenceRecommender:
        """Already trained: only checks that the catalogue matches."""
        if data.n_items != self.n_items:
            raise ValueError(f"model was trained for {self.n_items} items, data has {data.n_items}")
        return self

    def pad(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """``(B, T)`` int64 model input, ``1 <= T <= max_len``."""
        clean = []
        for h in histories:
            h = np.asarray(h, dtype=np.int64)
            clean.append(h[(h >= 1) & (h <= self.n_items)][-self.max_len:])
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
