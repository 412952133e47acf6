"""LightGCN (He et al., 2020): embeddings smoothed over the user-item graph, nothing else.

Each layer replaces every node's embedding by the sum of its neighbours', weighted by
1 / sqrt(deg(u) deg(i)); the final embedding is the mean of the layers, the layer-0 one included.
There are no feature transforms and no non-linearities. The "users" are the training sequences:
users under protocol A, sessions under protocol B. Training is the paper's BPR over sampled
(sequence, item, other item) triples, with the L2 penalty on the triples' layer-0 embeddings.

Serving holds no graph. The propagated item embeddings are computed once (``refresh``, which
``eval()`` calls whenever a graph is attached) and kept in the ``served`` buffer; the exported
graph is the mean of the session's items' propagated embeddings, dotted with every item's. That
mean is the fold-in of a session that has no user id. It is not the paper's user vector (a learned
id embedding, propagated), so it is measured, not assumed: ``streamrec train`` validates and tests
the served form.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from streamrec.errors import ConfigError
from streamrec.models.bag import pool

__all__ = ["LightGCN", "LightGCNConfig", "symmetric_mm"]


@dataclass(frozen=True, kw_only=True)
class LightGCNConfig:
    n_items: int
    n_users: int = 1  # training sequences: nodes of the graph; set from the training data
    max_len: int = 200  # the most recent items a session's vector pools
    d_model: int = 64
    n_layers: int = 3
    reg: float = 1e-4  # L2 on the layer-0 embeddings of each batch's triples

    def __post_init__(self) -> None:
        if min(self.n_items, self.n_users, self.max_len, self.d_model, self.n_layers) < 1:
            raise ConfigError(f"n_items, n_users, max_len, d_model and n_layers must be positive; got {self}")
        if self.reg < 0:
            raise ConfigError(f"reg must be >= 0, got {self.reg}")


class _SymmetricMM(torch.autograd.Function):
    """``adjacency @ x`` whose gradient is ``adjacency @ grad``: the normalised graph is its own transpose.

    torch differentiates a CSR product through a transposed copy, which made a step of ML-1M's graph
    (two million edges, three layers) cost 500 ms; this way forward and backward are both CSR products,
    about 11 ms a layer each."""

    @staticmethod
    def forward(ctx: Any, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return adjacency @ x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[None, torch.Tensor]:
        return None, ctx.adjacency @ grad


def symmetric_mm(adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``adjacency @ x`` for a symmetric sparse ``adjacency``, differentiable in ``x``."""
    return _SymmetricMM.apply(adjacency, x)


class LightGCN(nn.Module):
    def __init__(self, config: LightGCNConfig) -> None:
        super().__init__()
        self.config = c = config
        self.user_emb = nn.Embedding(c.n_users, c.d_model)
        self.item_emb = nn.Embedding(c.n_items + 1, c.d_model)  # row 0 (padding) has no edges
        for emb in (self.user_emb, self.item_emb):
            nn.init.normal_(emb.weight, std=0.1)  # the official code's initialisation
        self.register_buffer("served", torch.zeros(c.n_items + 1, c.d_model))  # propagated item embeddings
        self.adjacency: torch.Tensor | None = None  # (U + V, U + V) sparse, normalised; training only

    def set_graph(self, adjacency: torch.Tensor) -> None:
        """``adjacency``: the symmetric-normalised (n_users + n_items + 1) square sparse matrix, users first
        (``streamrec.train.graph.normalised_adjacency``); it must be symmetric."""
        n = self.config.n_users + self.config.n_items + 1
        if tuple(adjacency.shape) != (n, n):
            raise ValueError(f"adjacency must be ({n}, {n}) for this model, got {tuple(adjacency.shape)}")
        with warnings.catch_warnings():  # torch calls its CSR layout beta; the products used here are tested
            warnings.filterwarnings("ignore", "Sparse CSR tensor support is in beta", UserWarning)
            self.adjacency = adjacency.to(self.item_emb.weight.device).to_sparse_csr()

    def propagate(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The mean over layers of the propagated embeddings: users (U, C) and items (V, C)."""
        if self.adjacency is None:
            raise RuntimeError("LightGCN has no graph: call set_graph first")
        x = torch.cat([self.user_emb.weight, self.item_emb.weight])  # (U + V, C)
        total = x
        for _ in range(self.config.n_layers):
            x = symmetric_mm(self.adjacency, x)
            total = total + x
        final = total / (self.config.n_layers + 1)
        return final[: self.config.n_users], final[self.config.n_users:]

    @torch.no_grad()
    def refresh(self) -> None:
        """Store the propagated item embeddings that ``score`` serves."""
        self.served.copy_(self.propagate()[1])

    def train(self, mode: bool = True) -> LightGCN:
        super().train(mode)
        if not mode and self.adjacency is not None:
            self.refresh()
        return self

    def forward(self, users: torch.Tensor, pos: torch.Tensor,
                neg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """BPR over triples (B,) each: logits (B, 2), the positive's first, and the loss with its penalty."""
        u_all, i_all = self.propagate()
        u = u_all[users]  # (B, C)
        logits = torch.stack([(u * i_all[pos]).sum(-1), (u * i_all[neg]).sum(-1)], dim=1)  # (B, 2)
        bpr = -F.logsigmoid(logits[:, 0] - logits[:, 1]).mean()
        l2 = (self.user_emb(users).square().sum() + self.item_emb(pos).square().sum()
              + self.item_emb(neg).square().sum()) / (2 * len(users))
        return logits, bpr + self.config.reg * l2

    def score(self, seq: torch.Tensor) -> torch.Tensor:
        """The served graph: ``(B, T)`` left-padded item indices -> ``(B, n_items + 1)`` scores."""
        return pool(self.served[seq], seq) @ self.served.T  # (B, V)
