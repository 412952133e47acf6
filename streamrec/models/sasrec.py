"""SASRec (Kang & McAuley, 2018): causal self-attention over the item sequence, next item by full softmax.

Inputs are item indices LEFT-padded with 0, so the last column is the most recent item. Positions
are counted from the right (the most recent item always gets position ``max_len - 1``), so a
shorter input at serving time means the same as its left-padded training form.

Two traps (see PEERS.md): embeddings are initialised with std 0.02 and not scaled by sqrt(d) (with
tied output weights the scaled N(0, 1) start plateaus for ages), and every position may attend to
itself, so a padded query row always has one key and never produces NaNs that leak into real rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamrec.models.base import TrainData

__all__ = ["SASRec", "SASRecConfig", "SASRecRecommender"]


@dataclass
class SASRecConfig:
    n_items: int = 0
    max_len: int = 50
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.2


class CausalSelfAttention(nn.Module):
    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        assert config.d_model % config.n_heads == 0, "d_model must be a multiple of n_heads"
        self.n_heads, self.d_model = config.n_heads, config.d_model
        self.scale = 1.0 / float(np.sqrt(config.d_model // config.n_heads))
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model)
        self.proj = nn.Linear(config.d_model, config.d_model)
        self.attn_drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        C, H = self.d_model, self.n_heads  # python ints, not traced sizes, so the ONNX graph stays dynamic in B, T
        q, k, v = self.qkv(x).split(C, dim=2)
        q = q.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, hs)
        k = k.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, hs)
        v = v.view(B, T, H, C // H).transpose(1, 2)  # (B, H, T, hs)
        att = (q @ k.transpose(-2, -1)) * self.scale  # (B, H, T, T)
        # explicit matmul + masked_fill rather than SDPA: exports to plain ONNX ops with a dynamic T
        att = att.masked_fill(~allowed[:, None, :, :], float("-inf")).softmax(dim=-1)
        y = self.attn_drop(att) @ v  # (B, H, T, hs)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.d_model)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.d_model)
        self.mlp = nn.Sequential(nn.Linear(config.d_model, config.d_model), nn.GELU(),
                                 nn.Linear(config.d_model, config.d_model), nn.Dropout(config.dropout))
        self.drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln_1(x), allowed))
        return x + self.mlp(self.ln_2(x))


class SASRec(nn.Module):
    def __init__(self, config: SASRecConfig) -> None:
        super().__init__()
        if config.n_items < 1 or config.max_len < 1:
            raise ValueError(f"SASRec needs n_items >= 1 and max_len >= 1, got {config}")
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

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """``(B, T)`` left-padded item indices -> ``(B, T, C)`` hidden states, ``T <= max_len``."""
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
        for block in self.blocks:
            x = block(x, allowed) * real[..., None]
        return self.ln_f(x)  # (B, T, C)

    def forward(self, seq: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training: the next item at every position. ``targets`` ``(B, T)``, 0 where there is none.

        With targets, logits are returned for the positions that have one only, ``(M, n_items + 1)``,
        which keeps the full-catalogue cross-entropy affordable; without, for the last position.
        """
        h = self.encode(seq)  # (B, T, C)
        if targets is None:
            return h[:, -1, :] @ self.item_emb.weight.T, None  # (B, V)
        keep = targets > 0  # (B, T)
        logits = h[keep] @ self.item_emb.weight.T  # (M, V)
        return logits, F.cross_entropy(logits, targets[keep])

    def score(self, seq: torch.Tensor) -> torch.Tensor:
        """The served graph: ``(B, T)`` left-padded item indices -> ``(B, n_items + 1)`` scores."""
        return self.encode(seq)[:, -1, :] @ self.item_emb.weight.T  # (B, V)


@dataclass
class SASRecRecommender:
    """``sasrec`` for the model registry: ``fit`` trains with the shared loop for a fixed number of
    epochs (no validation cases reach ``fit``; ``streamrec train`` early-stops on validation)."""

    config: SASRecConfig = field(default_factory=SASRecConfig)
    epochs: int = 20
    seed: int = 0
    name: str = "sasrec"

    def fit(self, data: TrainData) -> SASRecRecommender:
        from streamrec.train import TorchSequenceRecommender, TrainConfig, seed_everything, sequence_examples, train

        config = SASRecConfig(**{**self.config.__dict__, "n_items": data.n_items})
        seed_everything(self.seed)
        model = SASRec(config)
        examples = sequence_examples(data.sequences, config.max_len)
        train(model, examples, None, TrainConfig(epochs=self.epochs, seed=self.seed, progress=False))
        self._scorer = TorchSequenceRecommender.from_module(model, config.n_items, config.max_len, name=self.name)
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self._scorer.score(histories)
