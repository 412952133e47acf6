"""The parts the ranking networks beside DeepFM (``WideDeep``, ``DCNv2``, ``DLRM``) build on.

``FieldEmbeddings`` turns a ranker's inputs into one ``d_embed`` vector per field, as
``DeepFM.score`` does (see ``streamrec.models.deepfm`` for the fields); ``mlp`` is the
Linear/ReLU/Dropout stack of their MLPs. DeepFM keeps its own copy of both: serving
(``streamrec.rank.folded``) reads its exported weights by their names.
"""

from __future__ import annotations

import torch
from torch import nn

from streamrec.models.deepfm import RankerConfig

__all__ = ["FieldEmbeddings", "mlp"]


class FieldEmbeddings(nn.Module):
    """A ranker config's field vectors: ``(sparse, multi, raw dense) -> (N, K, d)``, K = F + 1 + D.

    One table for all sparse fields, each field's rows from its offset on (one gather, not F); the
    multi field's mean of its active values' vectors (0 when none), by a matmul rather than
    EmbeddingBag so it exports to plain ONNX ops; each dense feature's learned vector scaled by its
    value, normalised with the config's ``dense_mean``/``dense_std`` (``normalise``). With
    ``dense=False`` there are no dense vectors (K = F + 1): the model reads ``normalise(dense)`` itself.

    The embeddings keep ``nn.Embedding``'s N(0, 1) draw until the model calls ``init_normal``: where it
    calls it decides the order of the random draws, so a model calls it after building its other layers.
    """

    def __init__(self, config: RankerConfig, *, dense: bool = True) -> None:
        super().__init__()
        d, n_dense = config.d_embed, config.n_dense
        sizes = torch.tensor(config.sparse_sizes)
        self.register_buffer("offsets", torch.cumsum(sizes, 0) - sizes, persistent=False)  # (F,)
        self.sparse_emb = nn.Embedding(int(sizes.sum()), d)
        self.multi_emb = nn.Parameter(torch.empty(config.n_multi, d))
        self.dense_emb = nn.Parameter(torch.empty(n_dense, d)) if dense else None
        # statistics come from the config, which a checkpoint stores next to the state_dict
        mean, std = config.dense_mean or (0.0,) * n_dense, config.dense_std or (1.0,) * n_dense
        self.register_buffer("dense_mean", torch.tensor(mean, dtype=torch.float32), persistent=False)  # (D,)
        self.register_buffer("dense_std", torch.tensor(std, dtype=torch.float32), persistent=False)  # (D,)

    def init_normal(self, std: float) -> None:
        """Draw the embeddings from N(0, std²): sparse, multi, then dense."""
        for p in (self.sparse_emb.weight, self.multi_emb, self.dense_emb):
            if p is not None:
                nn.init.normal_(p, std=std)

    def normalise(self, dense: torch.Tensor) -> torch.Tensor:
        """Raw ``dense`` (N, D) -> (N, D) in standard deviations from the mean."""
        return (dense - self.dense_mean) / self.dense_std

    def forward(self, sparse: torch.Tensor, multi: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """``sparse`` (N, F) int64, ``multi`` (N, G) 0/1, raw ``dense`` (N, D) -> (N, K, d)."""
        count = multi.sum(dim=1, keepdim=True).clamp(min=1.0)  # (N, 1): no active value -> a zero mean
        vectors = [self.sparse_emb(sparse + self.offsets),  # (N, F, d)
                   (multi @ self.multi_emb / count)[:, None, :]]  # (N, 1, d)
        if self.dense_emb is not None:
            vectors.append(self.normalise(dense)[:, :, None] * self.dense_emb)  # (N, D, d)
        return torch.cat(vectors, dim=1)  # (N, K, d)


def mlp(width: int, hidden: tuple[int, ...], dropout: float) -> tuple[nn.Sequential, int]:
    """Linear, ReLU and Dropout for each of the ``hidden`` sizes from ``width`` inputs, and the width it ends
    with (``width`` itself when ``hidden`` is empty)."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    return nn.Sequential(*layers), width
