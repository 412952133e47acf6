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
from torch import nn

from streamrec.errors import ConfigError
from streamrec.models.deepfm import RankerConfig, RankerModule, check_ranker_config
from streamrec.models.fields import FieldEmbeddings, mlp

__all__ = ["DLRM", "DLRMConfig"]


@dataclass(frozen=True, kw_only=True)
class DLRMConfig(RankerConfig):
    """DeepFM's fields, ``hidden`` being the top MLP, plus the bottom MLP's hidden sizes (``bottom``)."""

    bottom: tuple[int, ...] = (64,)

    def __post_init__(self) -> None:
        check_ranker_config(self, bottom=int)
        if any(h < 1 for h in self.bottom):
            raise ConfigError(f"DLRMConfig.bottom sizes must be >= 1, got {self.bottom}")


def _mlp(width: int, hidden: tuple[int, ...], out: int, dropout: float) -> nn.Sequential:
    """``fields.mlp`` with a last linear layer of ``out`` units."""
    layers, width = mlp(width, hidden, dropout)
    return nn.Sequential(*layers, nn.Linear(width, out))


class DLRM(RankerModule):
    def __init__(self, config: DLRMConfig) -> None:
        super().__init__()
        self.config = config
        d = config.d_embed
        self.fields = FieldEmbeddings(config, dense=False)  # the dense features go through the bottom MLP instead
        # the bottom MLP's last layer is linear: its vector's products with the embeddings take either sign
        self.bottom = _mlp(config.n_dense, config.bottom, d, config.dropout)
        m = len(config.sparse_sizes) + 2
        i, j = torch.triu_indices(m, m, offset=1)
        # the strict upper triangle as flat indices into (M, M): one Gather in the exported graph
        self.register_buffer("pairs", i * m + j, persistent=False)  # (M (M - 1) / 2,)
        self.top = _mlp(d + len(self.pairs), config.hidden, 1, config.dropout)
        # the products start small but not at 1e-4 (DeepFM's 0.01), where their gradients barely move them
        self.fields.init_normal(0.1)

    def score(self, sparse: torch.Tensor, multi: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """The served graph: ``sparse`` (N, F) int64, ``multi`` (N, G) 0/1, raw ``dense`` (N, D) -> (N,) logits."""
        z = self.bottom(self.fields.normalise(dense))  # (N, d)
        vectors = torch.cat([z[:, None, :],  # (N, 1, d)
                             self.fields(sparse, multi, dense)],  # (N, F + 1, d): the sparse fields, the multi field
                            dim=1)  # (N, M, d), M = F + 2
        products = (vectors @ vectors.transpose(1, 2)).flatten(1)[:, self.pairs]  # (N, M (M - 1) / 2)
        return self.top(torch.cat([z, products], dim=1))[:, 0]
