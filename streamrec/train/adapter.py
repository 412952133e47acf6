"""A trained torch sequence model as a ``Recommender``: ``streamrec.models.sequence``'s adapter over
the module's ``score`` (the same adapter runs an onnxruntime session in ``streamrec.export``)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from streamrec.models.sequence import ScoreFn, SequenceRecommender

__all__ = ["ScoreFn", "TorchSequenceRecommender", "module_score_fn"]


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


class TorchSequenceRecommender(SequenceRecommender):
    """``SequenceRecommender`` with a constructor from a torch module."""

    @classmethod
    def from_module(cls, module: nn.Module, n_items: int, max_len: int, *, name: str = "sequence",
                    device: torch.device | str | None = None, batch_size: int = 256) -> TorchSequenceRecommender:
        return cls(module_score_fn(module, device), n_items, max_len, name=name, batch_size=batch_size)
