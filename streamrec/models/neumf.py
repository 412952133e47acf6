"""NeuMF (He et al., 2017): a GMF tower and an MLP tower over (user, item), fused by one output layer.

What the fold-in changes from the paper. NeuMF looks up a learned vector per user id; a session at
the server has none. Here each tower's user vector is the mean of the embeddings of the user's items
(``streamrec.models.bag``), with a table of its own per tower, as FISM and NAIS do. Training pools
each prefix of a sequence and asks for the item that follows it, so the user side is computed the
same way in training and at serving; an unseen session needs no retraining. The paper's NeuMF is
initialised from separately trained GMF and MLP models; this one trains both towers jointly from
scratch, which the paper reports costs a little accuracy.

Training is the paper's pointwise log loss: each next item against ``n_negatives`` items drawn
uniformly from the catalogue (the paper draws from the user's unobserved items; with a catalogue of
thousands, drawing an observed one is rare and only adds a little noise).

``score`` is the served graph, ``seq`` (B, T) -> (B, n_items + 1). The MLP tower runs once per item
of the catalogue for each history; its first layer is split into a user and an item half, so the
item half is one (V, H) product rather than B copies of it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from streamrec.errors import ConfigError
from streamrec.models.bag import pool, prefix_pool

__all__ = ["NeuMF", "NeuMFConfig"]


@dataclass(frozen=True, kw_only=True)
class NeuMFConfig:
    n_items: int
    max_len: int = 200  # the most recent items the session vector pools
    d_gmf: int = 32
    d_mlp: int = 32  # each of the MLP's user and item embeddings; its input is their concatenation
    hidden: tuple[int, ...] = (32, 16)  # the paper's tower for 16 predictive factors: 64 -> 32 -> 16
    n_negatives: int = 4  # per positive, the paper's best
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if min(self.n_items, self.max_len, self.d_gmf, self.d_mlp, self.n_negatives, *self.hidden) < 1 \
                or not self.hidden:
            raise ConfigError(f"n_items, max_len, d_gmf, d_mlp, n_negatives and every hidden width must be "
                              f"positive, and hidden not empty; got {self}")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}")


class NeuMF(nn.Module):
    def __init__(self, config: NeuMFConfig) -> None:
        super().__init__()
        self.config = c = config
        V = c.n_items + 1
        self.gmf_user = nn.Embedding(V, c.d_gmf, padding_idx=0)  # pooled into the GMF user vector
        self.gmf_item = nn.Embedding(V, c.d_gmf)
        self.mlp_user = nn.Embedding(V, c.d_mlp, padding_idx=0)
        self.mlp_item = nn.Embedding(V, c.d_mlp)
        self.first_user = nn.Linear(c.d_mlp, c.hidden[0])  # the first layer's user half, with its bias
        self.first_item = nn.Linear(c.d_mlp, c.hidden[0], bias=False)
        layers: list[nn.Module] = []
        for a, b in zip(c.hidden, c.hidden[1:], strict=False):
            layers += [nn.Dropout(c.dropout), nn.Linear(a, b), nn.ReLU()]
        self.tower = nn.Sequential(*layers)
        self.out = nn.Linear(c.d_gmf + c.hidden[-1], 1)
        for emb in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(emb.weight, std=0.01)  # the paper's N(0, 0.01)
        with torch.no_grad():
            self.gmf_user.weight[0].zero_()
            self.mlp_user.weight[0].zero_()

    def _logits(self, gmf: torch.Tensor, mlp: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        """User vectors ``gmf`` (N, G) and ``mlp`` (N, M) against ``items`` (N, K), or every item when None:
        logits (N, K) or (N, V)."""
        if items is None:
            g = gmf[:, None, :] * self.gmf_item.weight[None]  # (N, V, G)
            h = self.first_user(mlp)[:, None, :] + self.first_item(self.mlp_item.weight)[None]  # (N, V, H0)
        else:
            g = gmf[:, None, :] * self.gmf_item(items)  # (N, K, G)
            h = self.first_user(mlp)[:, None, :] + self.first_item(self.mlp_item(items))  # (N, K, H0)
        h = self.tower(F.relu(h))  # (N, K, H)
        return self.out(torch.cat([g, h], dim=-1)).squeeze(-1)  # (N, K)

    def forward(self, seq: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training: every prefix's next item (``targets`` (B, T), 0 where there is none) against
        ``n_negatives`` uniform items; logits (M, 1 + n_negatives), the target in column 0. Without
        targets: the whole catalogue's logits after the last item, (B, V)."""
        if targets is None:
            return self.score(seq), None
        keep = targets > 0  # (B, T)
        gmf = prefix_pool(self.gmf_user(seq), seq)[keep]  # (M, G)
        mlp = prefix_pool(self.mlp_user(seq), seq)[keep]  # (M, M')
        pos = targets[keep]  # (M,)
        neg = torch.randint(1, self.config.n_items + 1, (len(pos), self.config.n_negatives), device=seq.device)
        logits = self._logits(gmf, mlp, torch.cat([pos[:, None], neg], dim=1))  # (M, 1 + S)
        labels = torch.zeros_like(logits)
        labels[:, 0] = 1.0
        return logits, F.binary_cross_entropy_with_logits(logits, labels)

    def score(self, seq: torch.Tensor) -> torch.Tensor:
        """The served graph: ``(B, T)`` left-padded item indices -> ``(B, n_items + 1)`` logits."""
        return self._logits(pool(self.gmf_user(seq), seq), pool(self.mlp_user(seq), seq), None)
