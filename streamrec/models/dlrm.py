"""DLRM (Naumov et al., 2019): dot products between one vector per field, then an MLP.

A bottom MLP turns the normalised dense features into one ``d_embed`` vector, beside the sparse
fields' embeddings and the multi field's mean embedding. Every pair of these vectors interacts by
one dot product (the second-order crosses of an FM, kept apart rather than summed), and the top
MLP (``hidden``) reads those products with the bottom MLP's vector to give the logit. Unlike
DeepFM, the dense features share one vector learned from all of them rather than one each, and
the embeddings reach the top MLP only through their products.

The inputs and losses are DeepFM's (``streamrec.models.deepfm``), so either ranker trains, exports
and serves the same way.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from streamrec.errors import ConfigError
from streamrec.models.deepfm import RankLoss, listwise_loss
from streamrec.models.widedeep import check_ranker_config

__all__ = ["DLRM", "DLRMConfig"]


@dataclass(frozen=True, kw_only=True)
class DLRMConfig:
    """DeepFM's fields, ``hidden`` being the top MLP, plus the bottom MLP's hidden sizes (``bottom``)."""

    sparse_sizes: tuple[int, ...]
    n_multi: int
    n_dense: int
    d_embed: int = 16
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    dense_mean: tuple[float, ...] = ()
    dense_std: tuple[float, ...] = ()
    bottom: tuple[int, ...] = (64,)

    def __post_init__(self) -> None:
        check_ranker_config(self, bottom=int)
        if any(h < 1 for h in self.bottom):
            raise ConfigError(f"DLRMConfig.bottom sizes must be >= 1, got {self.bottom}")


def _mlp(width: int, hidden: tuple[int, ...], out: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    return nn.Sequential(*layers, nn.Linear(width, out))


class DLRM(nn.Module):
    def __init__(self, config: DLRMConfig) -> None:
        super().__init__()
        self.config = config
        d, n_dense = config.d_embed, config.n_dense
        sizes = torch.tensor(config.sparse_sizes)
        self.register_buffer("offsets", torch.cumsum(sizes, 0) - sizes, persistent=False)  # (F,)
        self.sparse_emb = nn.Embedding(int(sizes.sum()), d)
        self.multi_emb = nn.Parameter(torch.empty(config.n_multi, d))
        mean, std = config.dense_mean or (0.0,) * n_dense, config.dense_std or (1.0,) * n_dense
        self.register_buffer("dense_mean", torch.tensor(mean, dtype=torch.float32), persistent=False)  # (D,)
        self.register_buffer("dense_std", torch.tensor(std, dtype=torch.float32), persistent=False)  # (D,)
        # the bottom MLP's last layer is linear: its vector's products with the embeddings take either sign
        self.bottom = _mlp(n_dense, config.bottom, d, config.dropout)
        m = len(config.sparse_sizes) + 2
        i, j = torch.triu_indices(m, m, offset=1)
        # the strict upper triangle as flat indices into (M, M): one Gather in the exported graph
        self.register_buffer("pairs", i * m + j, persistent=False)  # (M (M - 1) / 2,)
        self.top = _mlp(d + len(self.pairs), config.hidden, 1, config.dropout)
        # the products start small but not at 1e-4 (DeepFM's 0.01), where their gradients barely move them
        for p in (self.sparse_emb.weight, self.multi_emb):
            nn.init.normal_(p, std=0.1)

    def score(self, sparse: torch.Tensor, multi: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """The served graph: ``sparse`` (N, F) int64, ``multi`` (N, G) 0/1, raw ``dense`` (N, D) -> (N,) logits."""
        count = multi.sum(dim=1, keepdim=True).clamp(min=1.0)  # (N, 1)
        z = self.bottom((dense - self.dense_mean) / self.dense_std)  # (N, d)
        vectors = torch.cat([z[:, None, :],  # (N, 1, d)
                             self.sparse_emb(sparse + self.offsets),  # (N, F, d)
                             (multi @ self.multi_emb / count)[:, None, :]],  # (N, 1, d)
                            dim=1)  # (N, M, d), M = F + 2
        products = (vectors @ vectors.transpose(1, 2)).flatten(1)[:, self.pairs]  # (N, M (M - 1) / 2)
        return self.top(torch.cat([z, products], dim=1))[:, 0]

    def forward(self, sparse: torch.Tensor, multi: torch.Tensor, dense: torch.Tensor,
                labels: torch.Tensor | None = None, *, list_size: int | None = None,
                loss: RankLoss = "bce") -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training: ``(N,)`` logits, and with 0/1 float ``labels`` (N,) the loss (``DeepFM.forward``'s)."""
        logits = self.score(sparse, multi, dense)  # (N,)
        if labels is None:
            return logits, None
        if loss == "bce":
            return logits, F.binary_cross_entropy_with_logits(logits, labels)
        if loss == "listwise":
            if list_size is None:
                raise ValueError("the listwise loss needs list_size (candidates per list)")
            return logits, listwise_loss(logits, labels, list_size)
        raise ConfigError(f"loss must be 'bce' or 'listwise', got {loss!r}")
