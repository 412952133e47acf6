"""Wide & Deep (Cheng et al., 2016): a linear model and an MLP trained jointly, their logits summed.

The wide part memorises: a first-order weight per input value, plus a weight per combination of
two inputs' values for each cross product chosen by hand (``WideDeepConfig.crosses``), so a pair
seen often gets its own score without having to be generalised. The deep part generalises: an MLP
over the concatenated field vectors reaches combinations never seen, through the shared embeddings.
The fields, inputs and losses are DeepFM's (``streamrec.models.deepfm``), so either ranker trains,
exports and serves the same way. The paper trains the wide part with FTRL and the deep one with
AdaGrad; here one optimiser trains both, as the project's training loop does for any ranker.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from streamrec.errors import ConfigError
from streamrec.models.deepfm import RankerConfig, RankerModule, check_ranker_config
from streamrec.models.fields import FieldEmbeddings, mlp

__all__ = ["WideDeep", "WideDeepConfig"]


@dataclass(frozen=True, kw_only=True)
class WideDeepConfig(RankerConfig):
    """DeepFM's fields, plus the wide part's cross products.

    ``crosses``: pairs of inputs, each ``"sparse:<i>"`` (field i's index), ``"dense:<j>"`` (dense feature j,
    normalised, then bucketed by ``dense_boundaries``: ``len + 1`` buckets) or ``"multi"`` (each active value
    crossed with the other input's). A cross of two categorical inputs of cardinalities A and B has a weight
    per combination when A * B <= ``cross_buckets``; otherwise combinations are hashed into ``cross_buckets``
    weights (``(a * B + b) % cross_buckets``). A cross with ``"multi"`` has a weight per (value, other's
    value), the other's values hashed into ``cross_buckets // n_multi`` rows when they are more.

    The project's features (``streamrec.rank.features``: sparse fields item, year bucket, last event type,
    number of proposing sources, session-length bucket; dense per-source z-scores and reciprocal ranks, then
    popularity, session length, recency and similarities to the session's last items) suggest crosses such
    as ``("sparse:3", "dense:<j>")``, j the position of ``log_pop`` (how many sources agree x popularity),
    and ``("multi", "sparse:1")`` (genre x era). The default has none: the crosses belong to a feature
    layout, and ``train-ranker`` takes those of ``streamrec.rank.features.wide_crosses``.
    """

    crosses: tuple[tuple[str, str], ...] = ()
    cross_buckets: int = 1024
    dense_boundaries: tuple[float, ...] = (-1.5, -0.5, 0.5, 1.5)  # in standard deviations from the mean

    def __post_init__(self) -> None:
        check_ranker_config(self, dense_boundaries=float)
        object.__setattr__(self, "crosses", tuple(tuple(map(str, pair)) for pair in self.crosses))
        if self.cross_buckets < 1:
            raise ConfigError(f"WideDeepConfig.cross_buckets must be >= 1, got {self.cross_buckets}")
        bounds = self.dense_boundaries
        if not all(math.isfinite(b) for b in bounds) or list(bounds) != sorted(set(bounds)):
            raise ConfigError(f"WideDeepConfig.dense_boundaries must be finite and increasing, got {bounds}")
        for pair in self.crosses:
            if len(pair) != 2 or pair[0] == pair[1] or pair == ("multi", "multi"):
                raise ConfigError(f"WideDeepConfig.crosses: each cross is two different inputs, got {pair}")
            for name in pair:
                _input(self, name)


def _input(config: WideDeepConfig, name: str) -> tuple[str, int, int]:
    """``name``'s kind (``sparse``, ``dense`` or ``multi``), position and cardinality."""
    kind, _, pos = name.partition(":")
    count = {"sparse": len(config.sparse_sizes), "dense": config.n_dense}.get(kind)
    if name == "multi":
        return "multi", 0, config.n_multi
    if count is None or not pos.isdigit() or int(pos) >= count:
        raise ConfigError(f"WideDeepConfig.crosses: {name!r} is not 'multi', 'sparse:<i>' (i < "
                          f"{len(config.sparse_sizes)}) or 'dense:<j>' (j < {config.n_dense})")
    i = int(pos)
    return kind, i, config.sparse_sizes[i] if kind == "sparse" else len(config.dense_boundaries) + 1


class WideDeep(RankerModule):
    def __init__(self, config: WideDeepConfig) -> None:
        super().__init__()
        self.config = config
        self.fields = FieldEmbeddings(config)  # the deep part's input: (N, K, d)
        self.sparse_w = nn.Embedding(self.fields.sparse_emb.num_embeddings, 1)  # a weight per sparse value
        self.multi_w = nn.Parameter(torch.zeros(config.n_multi))
        self.dense_w = nn.Linear(config.n_dense, 1, bias=False)
        self.bias = nn.Parameter(torch.zeros(()))
        self.register_buffer("boundaries", torch.tensor(config.dense_boundaries, dtype=torch.float32),
                             persistent=False)  # (B,)
        self.crosses: list[tuple[tuple[str, int, int], tuple[str, int, int]]] = []
        tables = []
        for pair in config.crosses:
            a, b = sorted((_input(config, name) for name in pair), key=lambda x: x[0] != "multi")
            self.crosses.append((a, b))
            if a[0] == "multi":  # rows: the other's values (hashed past the budget), columns: the multi values
                tables.append(nn.Embedding(min(b[2], max(1, config.cross_buckets // a[2])), a[2]))
            else:
                tables.append(nn.Embedding(min(a[2] * b[2], config.cross_buckets), 1))
        self.cross_w = nn.ModuleList(tables)
        layers, width = mlp((len(config.sparse_sizes) + 1 + config.n_dense) * config.d_embed, config.hidden,
                            config.dropout)
        self.dnn = nn.Sequential(*layers, nn.Linear(width, 1, bias=False))
        # not DeepFM's 0.01 (chosen for its FM's products): at that scale a bce fit of the MLP alone settles on the
        # base rate before the embeddings grow apart
        self.fields.init_normal(0.1)
        # a linear model starts from no opinion: the wide weights at 0
        for p in (self.sparse_w.weight, self.dense_w.weight, *(t.weight for t in self.cross_w)):
            nn.init.zeros_(p)

    def score(self, sparse: torch.Tensor, multi: torch.Tensor, dense: torch.Tensor) -> torch.Tensor:
        """The served graph: ``sparse`` (N, F) int64, ``multi`` (N, G) 0/1, raw ``dense`` (N, D) -> (N,) logits."""
        count = multi.sum(dim=1, keepdim=True).clamp(min=1.0)  # (N, 1)
        x = self.fields.normalise(dense)  # (N, D)
        buckets = torch.bucketize(x, self.boundaries)  # (N, D) int64, exported as a sum of comparisons

        def value(kind: str, i: int) -> torch.Tensor:
            return (sparse if kind == "sparse" else buckets)[:, i]  # (N,)

        wide = (self.bias + self.sparse_w(sparse + self.fields.offsets).sum(dim=(1, 2))
                + multi @ self.multi_w / count[:, 0] + self.dense_w(x)[:, 0])  # (N,) first order
        for (a, b), table in zip(self.crosses, self.cross_w, strict=True):
            if a[0] == "multi":  # every active value's weight with the other's, summed: the binary crosses' sum
                wide = wide + (table(value(b[0], b[1]) % table.num_embeddings) * multi).sum(dim=1)
            else:
                wide = wide + table((value(a[0], a[1]) * b[2] + value(b[0], b[1])) % table.num_embeddings)[:, 0]
        return wide + self.dnn(self.fields(sparse, multi, dense).flatten(1))[:, 0]
