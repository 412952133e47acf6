"""A history as a bag of items: the session vector of the models that have no user id at serving time.

NeuMF, AutoRec and LightGCN learn (or, in the papers, look up) one vector per user. A session that
reaches the server has no user id, so its vector is pooled from its items' embeddings instead,
the way our matrix factorisation folds a history in as a new user. Training pools the same way,
over every prefix of a sequence at once, so what the network learns to score is what it is served.

Histories are left-padded with 0 (``streamrec.models.sequence``), so the pool of the last position is
the pool of the whole history.
"""

from __future__ import annotations

from typing import Literal

import torch

__all__ = ["NORMS", "Norm", "pool", "prefix_pool"]

#: How a bag's sum is scaled: ``"mean"`` divides by the number of items, ``"sqrt"`` by its square root
#: (the multi-hot vector scaled to unit length, as Mult-DAE normalises its input).
Norm = Literal["mean", "sqrt"]
NORMS: tuple[Norm, ...] = ("mean", "sqrt")


def _scale(total: torch.Tensor, count: torch.Tensor, norm: Norm) -> torch.Tensor:
    count = count.clamp(min=1.0)
    return total / (count if norm == "mean" else count.sqrt())


def pool(emb: torch.Tensor, seq: torch.Tensor, norm: Norm = "mean") -> torch.Tensor:
    """``emb`` (B, T, C) of ``seq`` (B, T) -> (B, C): the history's pooled vector; 0 for an empty one."""
    real = (seq > 0).to(emb.dtype)  # (B, T)
    total = (emb * real[..., None]).sum(1)  # (B, C)
    return _scale(total, real.sum(1, keepdim=True), norm)


def prefix_pool(emb: torch.Tensor, seq: torch.Tensor, norm: Norm = "mean") -> torch.Tensor:
    """``emb`` (B, T, C) of ``seq`` (B, T) -> (B, T, C): position t pools the items up to and including t."""
    real = (seq > 0).to(emb.dtype)  # (B, T)
    total = (emb * real[..., None]).cumsum(1)  # (B, T, C)
    return _scale(total, real.cumsum(1)[..., None], norm)
