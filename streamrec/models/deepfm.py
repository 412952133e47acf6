"""DeepFM (Guo et al., 2017): the second stage, scoring (session, candidate item) pairs.

Every field has one ``d_embed`` vector, and the three parts summed into the logit share them:
first-order weights, the FM's pairwise dot products of field vectors, and an MLP over their
concatenation. Sharing is the point: the FM learns feature crosses from few examples, the MLP
higher-order ones, and neither needs hand-made cross features.

Fields: ``F`` categorical ``sparse`` fields (an index each), one multi-valued field (``multi``, a
0/1 multi-hot over ``n_multi`` values such as genres: its vector is the mean of the active values'
vectors, 0 when none) and ``D`` dense features (each a learned vector scaled by the value). The
model normalises the raw dense values itself with the config's ``dense_mean``/``dense_std``, so
the exported graph takes raw features and the statistics travel in the manifest with the config.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from streamrec.errors import ConfigError

__all__ = ["DeepFM", "DeepFMConfig", "RankLoss", "RankerConfig", "RankerModule", "check_ranker_config", "listwise_loss",
           "rank_loss"]

RankLoss = Literal["bce", "listwise"]


@dataclass(frozen=True, kw_only=True)
class RankerConfig:
    """The fields every ranker's config has (``DeepFMConfig``, ``WideDeepConfig``, ``DCNv2Config``, ``DLRMConfig``)."""

    sparse_sizes: tuple[int, ...]  # cardinality of each categorical field
    n_multi: int  # vocabulary of the multi-valued field
    n_dense: int
    d_embed: int = 16
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    dense_mean: tuple[float, ...] = ()  # empty: 0 (the raw values are used as they are)
    dense_std: tuple[float, ...] = ()  # empty: 1

    def __post_init__(self) -> None:
        check_ranker_config(self)


@dataclass(frozen=True, kw_only=True)
class DeepFMConfig(RankerConfig):
    """DeepFM's config: the fields every ranker has, nothing more."""


def check_ranker_config(config: RankerConfig, **own: type) -> None:
    """Normalise and check the fields every ranker config shares (``RankerConfig``'s), in ``__post_init__``.

    The shared tuples, and the config's own tuple fields named in ``own`` (name -> element type), become
    plain tuples of that type, whether given numpy values or the lists of a manifest's JSON (the config is
    frozen: they are set once, here). Raises ``ConfigError`` naming the field at fault.
    """
    cls = type(config).__name__
    kinds = {"sparse_sizes": int, "hidden": int, "dense_mean": float, "dense_std": float, **own}
    for name, kind in kinds.items():
        object.__setattr__(config, name, tuple(map(kind, getattr(config, name))))
    if not config.sparse_sizes or min(config.sparse_sizes) < 1:
        raise ConfigError(f"{cls}.sparse_sizes needs at least one field, each of size >= 1; got {config.sparse_sizes}")
    for name in ("n_multi", "n_dense", "d_embed"):
        if getattr(config, name) < 1:
            raise ConfigError(f"{cls}.{name} must be >= 1, got {getattr(config, name)}")
    if any(h < 1 for h in config.hidden):
        raise ConfigError(f"{cls}.hidden sizes must be >= 1, got {config.hidden}")
    if not 0.0 <= config.dropout < 1.0:
        raise ConfigError(f"{cls}.dropout must be in [0, 1), got {config.dropout}")
    for name in ("dense_mean", "dense_std"):
        stats = getattr(config, name)
        if stats and (len(stats) != config.n_dense or not all(math.isfinite(v) for v in stats)):
            raise ConfigError(f"{cls}.{name} must be empty or {config.n_dense} finite values "
                              f"(one per dense feature), got {len(stats)}: {stats}")
    if any(s <= 0 for s in config.dense_std):
        raise ConfigError(f"{cls}.dense_std must be > 0 (1 for a constant feature), got {config.dense_std}")


def listwise_loss(logits: torch.Tensor, labels: torch.Tensor, list_size: int) -> torch.Tensor:
    """Softmax cross-entropy of each list's positive among its candidates, averaged over lists.

    The N rows are ``N // list_size`` consecutive lists. A list without a positive (the next item was
    not among the candidates) has nothing to teach the softmax, and is left out rather than giving a
    0/0 target; with several positives the target is spread over them.
    """
    if list_size < 1 or logits.shape[0] % list_size:
        raise ValueError(f"listwise loss needs N ({logits.shape[0]}) to be a multiple of list_size ({list_size})")
    log_p = logits.view(-1, list_size).log_softmax(dim=1)  # (L, list_size)
    target = labels.view(-1, list_size)  # (L, list_size)
    n_pos = target.sum(dim=1)  # (L,)
    per_list = -(target * log_p).sum(dim=1) / n_pos.clamp(min=1)  # (L,), 0 for a list without positive
    return per_list.sum() / (n_pos > 0).sum().clamp(min=1)


def rank_loss(logits: torch.Tensor, labels: torch.Tensor, loss: RankLoss, list_size: int | None) -> torch.Tensor:
    """Every ranker's training loss of ``(N,)`` logits against 0/1 float ``labels`` (N,).

    ``"bce"`` treats every row on its own; ``"listwise"`` takes the rows as consecutive lists of
    ``list_size`` candidates, one positive each (see ``listwise_loss``).
    """
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits, labels)
    if loss == "listwise":
        if list_size is None:
            raise ValueError("the listwise loss needs list_size (candidates per list)")
        return listwise_loss(logits, labels, list_size)
    raise ConfigError(f"loss must be 'bce' or 'listwise', got {loss!r}")


class RankerModule(nn.Module):
    """The contract every ranking network keeps (DeepFM, ``WideDeep``, ``DCNv2``, ``DLRM``): ``score`` is the
    served graph, ``forward`` the same logits with the training loss."""

    def score(self, sparse: torch.Tensor, multi: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """The served graph: ``sparse`` (N, F) int64, ``multi`` (N, G) 0/1, raw ``dense`` (N, D) -> (N,) logits."""
        raise NotImplementedError

    def forward(self, sparse: torch.Tensor, multi: torch.Tensor, dense: torch.Tensor,
                labels: torch.Tensor | None = None, *, list_size: int | None = None,
                loss: RankLoss = "bce") -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training: ``(N,)`` logits, and with 0/1 float ``labels`` (N,) the loss (see ``rank_loss``)."""
        logits = self.score(sparse, multi, dense)  # (N,)
        return logits, None if labels is None else rank_loss(logits, labels, loss, list_size)


class DeepFM(RankerModule):
    def __init__(self, config: DeepFMConfig) -> None:
        super().__init__()
        self.config = config
        d, n_dense = config.d_embed, config.n_dense
        sizes = torch.tensor(config.sparse_sizes)
        # one table for all sparse fields, each field's rows from its offset on: one gather, not F
        self.register_buffer("offsets", torch.cumsum(sizes, 0) - sizes, persistent=False)  # (F,)
        self.sparse_emb = nn.Embedding(int(sizes.sum()), d)
        self.sparse_w = nn.Embedding(int(sizes.sum()), 1)  # first-order weights
        self.multi_emb = nn.Parameter(torch.empty(config.n_multi, d))
        self.multi_w = nn.Parameter(torch.empty(config.n_multi))
        self.dense_emb = nn.Parameter(torch.empty(n_dense, d))
        self.dense_w = nn.Linear(n_dense, 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(()))
        # statistics come from the config, which a checkpoint stores next to the state_dict
        mean, std = config.dense_mean or (0.0,) * n_dense, config.dense_std or (1.0,) * n_dense
        self.register_buffer("dense_mean", torch.tensor(mean, dtype=torch.float32), persistent=False)  # (D,)
        self.register_buffer("dense_std", torch.tensor(std, dtype=torch.float32), persistent=False)  # (D,)
        layers: list[nn.Module] = []
        width = (len(config.sparse_sizes) + 1 + n_dense) * d
        for h in config.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(config.dropout)]
            width = h
        self.dnn = nn.Sequential(*layers, nn.Linear(width, 1, bias=False))  # the global bias is self.bias
        # small, as usual for DeepFM: the FM's products of two vectors start near 0 rather than as random crosses
        for p in (self.sparse_emb.weight, self.sparse_w.weight, self.multi_emb, self.multi_w, self.dense_emb):
            nn.init.normal_(p, std=0.01)

    def score(self, sparse: torch.Tensor, multi: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """The served graph: ``sparse`` (N, F) int64, ``multi`` (N, G) 0/1, raw ``dense`` (N, D) -> (N,) logits."""
        idx = sparse + self.offsets  # (N, F)
        count = multi.sum(dim=1, keepdim=True).clamp(min=1.0)  # (N, 1): no active value -> a zero mean
        x = (dense - self.dense_mean) / self.dense_std  # (N, D)
        # the multi field's mean by a matmul, not EmbeddingBag: it exports to plain ONNX ops
        fields = torch.cat([self.sparse_emb(idx),  # (N, F, d)
                            (multi @ self.multi_emb / count)[:, None, :],  # (N, 1, d)
                            x[:, :, None] * self.dense_emb],  # (N, D, d)
                           dim=1)  # (N, K, d), K = F + 1 + D
        first = self.sparse_w(idx).sum(dim=(1, 2)) + multi @ self.multi_w / count[:, 0] + self.dense_w(x)[:, 0]  # (N,)
        total = fields.sum(dim=1)  # (N, d)
        fm = 0.5 * (total * total - (fields * fields).sum(dim=1)).sum(dim=1)  # (N,) all pairwise dot products
        deep = self.dnn(fields.flatten(1))[:, 0]  # (N,)
        return self.bias + first + fm + deep
