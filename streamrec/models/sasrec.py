"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence, next item by full softmax.

Inputs are item indices LEFT-padded with 0, so the last column is the most recent item. Positions
are counted from the right (the most recent item always gets position ``max_len - 1``), so a
shorter input at serving time means the same as its left-padded training form.

Two traps, both met training a plain SASRec on ML-1M here as a yardstick: embeddings are initialised
with std 0.02 and not scaled by sqrt(d) (with tied output weights the scaled N(0, 1) start began at
a loss of 45 and plateaued for 150 epochs), and every position may attend to itself, so a padded
query row always has one key and never produces NaNs that leak into real rows (they inflated the
metrics to 0.74).

The loss is the full softmax cross-entropy over the catalogue (the SASRec+ recipe of Klenitskiy &
Vasilev, 2023), or, for catalogues too large for that, a sampled cross-entropy: ``n_negatives``
items per batch drawn from item popularity, with the logQ correction of Yi et al. (2019): every
logit, positive and negative, minus log q(item), so the sampled softmax estimates the full one
instead of learning to push popular items down. ``score`` is the same graph either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamrec.errors import ConfigError

__all__ = ["Block", "Loss", "SASRec", "SASRecConfig", "run_blocks"]

Loss = Literal["full-ce", "sampled-ce"]
LOSSES: tuple[Loss, ...] = ("full-ce", "sampled-ce")


@dataclass(frozen=True, kw_only=True)
class SASRecConfig:
    n_items: int
    max_len: int = 50
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2
    loss: Loss = "full-ce"
    n_negatives: int = 256  # sampled-ce only: popularity-drawn negatives shared by the whole batch

    def __post_init__(self) -> None:
        check_transformer(self)
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}")
        if self.loss not in LOSSES:
            raise ConfigError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {self.loss!r}")
        if self.n_negatives < 1:
            raise ConfigError(f"n_negatives must be positive, got {self.n_negatives}")


class TransformerDims(Protocol):
    n_items: int
    max_len: int
    d_model: int
    n_layers: int
    n_heads: int


def check_transformer(config: TransformerDims) -> None:
    """The shape checks SASRec's and BERT4Rec's configs share (same blocks, same attention)."""
    if min(config.n_items, config.max_len, config.d_model, config.n_layers, config.n_heads) < 1:
        raise ConfigError(f"n_items, max_len, d_model, n_layers and n_heads must be positive; got n_items="
                          f"{config.n_items}, max_len={config.max_len}, d_model={config.d_model}, "
                          f"n_layers={config.n_layers}, n_heads={config.n_heads}")
    if config.d_model % config.n_heads:
        raise ConfigError(f"d_model ({config.d_model}) must be a multiple of n_heads ({config.n_heads})")


class CausalSelfAttention(nn.Module):
    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.n_heads, self.d_model = config.n_heads, config.d_model
        self.scale = 1.0 / float(np.sqrt(config.d_model // config.n_heads))
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.attn_drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``(B, T, C)`` -> ``(B, T, C)``, or with ``last_only`` the last position's output alone, ``(B, 1, C)``:
        every position is still a key, but only the last one asks (a third of the block's products)."""
        B, T, _ = x.shape
        C, H = self.d_model, self.n_heads  # python ints, not traced sizes, so the ONNX graph stays dynamic in B, T
        if last_only:
            q = F.linear(x[:, -1:], self.qkv.weight[:C], self.qkv.bias[:C])  # (B, 1, C)
            k, v = F.linear(x, self.qkv.weight[C:], self.qkv.bias[C:]).split(C, dim=2)
            allowed, Tq = allowed[:, -1:], 1
        else:
            (q, k, v), Tq = self.qkv(x).split(C, dim=2), T
        q = q.view(B, Tq, H, C // H).transpose(1, 2)  # (B, H, Tq, hs)
        k = k.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, hs)
        v = v.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, hs)
        att = (q @ k.transpose(-2, -1)) * self.scale  # (B, H, Tq, T)
        # explicit matmul + masked_fill rather than SDPA: exports to plain ONNX ops with a dynamic T
        att = att.masked_fill(~allowed[:, None, :, :], float("-inf")).softmax(dim=-1)
        y = self.attn_drop(att) @ v  # (B, H, Tq, hs)
        return self.proj(y.transpose(1, 2).reshape(B, Tq, C))  # (B, Tq, C)


class Block(nn.Module):
    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, config.d_model), nn.GELU(),
                                 nn.Linear(config.d_model, config.d_model), nn.Dropout(config.dropout))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``last_only``: the last position's output alone, ``(B, 1, C)``, what a served graph's last block needs."""
        h = self.ln_1(x)
        x = (x[:, -1:] if last_only else x) + self.drop(self.attn(h, allowed, last_only))
        return x + self.mlp(self.ln_2(x))


def run_blocks(blocks: nn.ModuleList, x: torch.Tensor, allowed: torch.Tensor, real: torch.Tensor,
               last_only: bool) -> torch.Tensor:
    """``x`` through every block, padding zeroed after each; with ``last_only`` the last block gives the
    last position alone (the earlier blocks still run everywhere: their outputs are its keys)."""
    for i, block in enumerate(blocks):
        last = last_only and i == len(blocks) - 1
        x = block(x, allowed, last) * (real[:, -1:] if last else real)[..., None]
    return x


class SASRec(nn.Module):
    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.config = config
        self.item_emb = nn.Embedding(config.n_items + 1, config.d_model, padding_idx=0)
        self.pos_emb = nn.Embedding(config.max_len, config.d_model)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        for emb in (self.item_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()
        # log q(item) of the sampled-ce proposal; uniform until ``set_sampling_distribution``. Only the
        # training loss reads it, so the exported ``score`` graph does not carry it.
        log_q = torch.full((config.n_items + 1,), -float(np.log(config.n_items)))
        log_q[0] = -float("inf")  # padding is never drawn
        self.register_buffer("log_q", log_q)

    def set_sampling_distribution(self, counts: np.ndarray | torch.Tensor) -> None:
        """Draw sampled-ce negatives in proportion to ``counts`` ``(n_items + 1,)``, the training data's
        ``streamrec.models.recommend.item_counts``.

        Every item keeps a count of at least one, so an item missing from ``counts`` can still be drawn
        and, as a positive, gets a finite correction rather than an infinite logit.
        """
        counts = torch.as_tensor(counts, dtype=torch.float64)
        if counts.shape != self.log_q.shape or (counts < 0).any():
            raise ValueError(f"counts must be ({self.config.n_items + 1},) and non-negative, got {tuple(counts.shape)}")
        q = counts.clamp(min=1.0)
        q[0] = 0.0
        self.log_q.copy_((q / q.sum()).log().to(self.log_q))

    def encode(self, seq: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``(B, T)`` left-padded item indices -> ``(B, T, C)`` hidden states, ``T <= max_len``; with
        ``last_only``, the last position's alone, ``(B, 1, C)``, computed without the others' last block."""
        B, T = seq.shape
        idx = torch.arange(T, device=seq.device)  # (T,)
        real = seq > 0  # (B, T)
        # causal, real keys only, and always itself: padded query rows keep one key (no NaNs)
        causal = idx[None, :] <= idx[:, None]  # (T, T) query row, key column
        itself = idx[None, :] == idx[:, None]  # (T, T); not torch.eye: ORT has no bool EyeLike
        allowed = causal[None] & (real[:, None, :] | itself[None])  # (B, T, T)
        pos = idx + (self.config.max_len - T)  # (T,) counted from the right
        x = self.item_emb(seq) + self.pos_emb(pos)[None]  # (B, T, C)
        x = self.drop(x) * real[..., None]
        return self.ln_f(run_blocks(self.blocks, x, allowed, real, last_only))  # (B, T or 1, C)

    def forward(self, seq: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training: the next item at every position. ``targets`` ``(B, T)``, 0 where there is none.

        With targets, logits are returned for the positions that have one only, ``(M, n_items + 1)``,
        which keeps the full-catalogue cross-entropy affordable; without, for the last position. With
        ``loss="sampled-ce"`` they are the corrected sampled logits ``(M, 1 + n_negatives)``, the
        target in column 0.
        """
        h = self.encode(seq)  # (B, T, C)
        if targets is None:
            return h[:, -1, :] @ self.item_emb.weight.T, None  # (B, V)
        keep = targets > 0  # (B, T)
        if self.config.loss == "sampled-ce":
            return self.sampled_cross_entropy(h[keep], targets[keep])
        logits = h[keep] @ self.item_emb.weight.T  # (M, V)
        return logits, F.cross_entropy(logits, targets[keep])

    def sampled_cross_entropy(self, h: torch.Tensor, pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Softmax over each row's target and ``n_negatives`` shared negatives, all logQ-corrected.

        ``h`` ``(M, C)`` hidden states, ``pos`` ``(M,)`` their targets. A negative that is the row's own
        target is masked out, so it never counts against itself.
        """
        neg = torch.multinomial(self.log_q.exp(), self.config.n_negatives, replacement=True)  # (S,)
        w = self.item_emb.weight
        pos_logits = (h * w[pos]).sum(-1) - self.log_q[pos]  # (M,)
        neg_logits = h @ w[neg].T - self.log_q[neg]  # (M, S)
        neg_logits = neg_logits.masked_fill(neg[None, :] == pos[:, None], float("-inf"))
        logits = torch.cat([pos_logits[:, None], neg_logits], dim=1)  # (M, 1 + S)
        return logits, F.cross_entropy(logits, torch.zeros_like(pos))

    def score(self, seq: torch.Tensor) -> torch.Tensor:
        """The served graph: ``(B, T)`` left-padded item indices -> ``(B, n_items + 1)`` scores."""
        return self.session(seq) @ self.item_vectors().T  # (B, V)

    def session(self, seq: torch.Tensor) -> torch.Tensor:
        """The retrieval graph: ``(B, T)`` -> ``(B, C)``, whose products with ``item_vectors`` are ``score``."""
        return self.encode(seq, last_only=True)[:, -1, :]

    def item_vectors(self) -> torch.Tensor:
        """``(n_items + 1, C)``: the tied output embeddings."""
        return self.item_emb.weight

