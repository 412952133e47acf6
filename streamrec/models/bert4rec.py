"""BERT4Rec (Sun et al., 2019): bidirectional self-attention trained to fill in masked items (the Cloze task).

Training hides a share of each sequence's items behind a mask token and predicts them from both
sides; serving appends one mask token after the history and reads the next item there. Items are
indices LEFT-padded with 0, the mask token is ``n_items + 1``, and scores cover ``n_items + 1``
columns (column 0, padding, is masked by the adapter). Positions are counted from the right as in
SASRec, so a shorter input at serving time means the same as its left-padded form.

The window is ``max_len + 1`` tokens in both cases: ``score`` sees up to ``max_len`` history items
plus the mask, and training rebuilds the same window from the shared loop's shifted pair (the
targets plus the one older item only the inputs hold), so every position embedding is trained.

Masking follows Petrov & Macdonald's replicability study (2022): exactly ``round(mask_prob * n)``
of a row's ``n`` items, at least one, no 80/10/10 replacement. As in the original code, a share
``last_only_prob`` of the rows masks their last item only, which is the task ``score`` solves.

The attention blocks are SASRec's; only the key mask differs (every real key, not only earlier ones).
Each query may attend to itself, so a fully padded row never produces NaNs (see sasrec.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from streamrec.errors import ConfigError
from streamrec.models.sasrec import Block, SASRecConfig, check_transformer, run_blocks

__all__ = ["Bert4Rec", "Bert4RecConfig"]


@dataclass(frozen=True, kw_only=True)
class Bert4RecConfig:
    n_items: int
    max_len: int = 200  # the original's ML-1M setting
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.1
    mask_prob: float = 0.2
    last_only_prob: float = 0.1  # rows that mask their last item only; ~1 in 11 in the original data

    def __post_init__(self) -> None:
        check_transformer(self)
        if not 0 < self.mask_prob <= 1 or not 0 <= self.last_only_prob <= 1 or not 0 <= self.dropout < 1:
            raise ConfigError(f"mask_prob must lie in (0, 1], last_only_prob in [0, 1] and dropout in [0, 1); "
                              f"got {self.mask_prob}, {self.last_only_prob}, {self.dropout}")


class Bert4Rec(nn.Module):
    def __init__(self, config: Bert4RecConfig) -> None:
        super().__init__()
        self.config = config
        self.mask_token = config.n_items + 1
        self.item_emb = nn.Embedding(config.n_items + 2, config.d_model, padding_idx=0)  # + padding, mask
        self.pos_emb = nn.Embedding(config.max_len + 1, config.d_model)  # history + the mask
        self.drop = nn.Dropout(config.dropout)
        attention = SASRecConfig(n_items=config.n_items, max_len=config.max_len, d_model=config.d_model,
                                 n_heads=config.n_heads, dropout=config.dropout)  # what the blocks read
        self.blocks = nn.ModuleList(Block(attention) for _ in range(config.n_layers))
        self.ln_f = nn.LayerNorm(config.d_model)
        self.out_bias = nn.Parameter(torch.zeros(config.n_items + 1))
        for emb in (self.item_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)  # not scaled by sqrt(d): see sasrec.py
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def encode(self, seq: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """``(B, T)`` left-padded tokens (items or the mask) -> ``(B, T, C)``, ``T <= max_len + 1``
        (``(B, 1, C)`` with ``last_only``).

        As ``SASRec.encode`` but bidirectional and with one more position, for the mask token.
        """
        B, T = seq.shape
        idx = torch.arange(T, device=seq.device)  # (T,)
        real = seq > 0  # (B, T)
        itself = idx[None, :] == idx[:, None]  # (T, T); not torch.eye: ORT has no bool EyeLike
        allowed = real[:, None, :] | itself[None]  # (B, T, T) query row, key column
        pos = idx + (self.config.max_len + 1 - T)  # (T,) counted from the right
        x = self.item_emb(seq) + self.pos_emb(pos)[None]  # (B, T, C)
        x = self.drop(x) * real[..., None]
        return self.ln_f(run_blocks(self.blocks, x, allowed, real, last_only))  # (B, T or 1, C)

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """``(..., C)`` -> ``(..., n_items + 1)``: tied output embeddings, never the mask token's."""
        return h @ self.item_emb.weight[: self.config.n_items + 1].T + self.out_bias

    def cloze_mask(self, window: torch.Tensor) -> torch.Tensor:
        """Which positions of ``(B, L)`` left-padded items to hide: ``(B, L)`` bool, one or more per real row.

        Draws from torch's RNG, so ``seed_everything`` makes training repeat.
        """
        B, L = window.shape
        real = window > 0  # (B, L)
        n_mask = (real.sum(1) * self.config.mask_prob).round().clamp(min=1)  # (B,)
        keys = torch.rand(B, L, device=window.device).masked_fill(~real, 2.0)  # padding sorts last
        rank = keys.argsort(dim=1).argsort(dim=1)  # (B, L) each position's place in its row's random order
        masked = rank < n_mask[:, None]
        last_only = torch.rand(B, 1, device=window.device) < self.config.last_only_prob  # (B, 1)
        masked = torch.where(last_only, torch.arange(L, device=window.device) == L - 1, masked)
        return masked & real

    def forward(self, seq: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training: the Cloze task on the window ``[seq[:, :1], targets]``, i.e. the last ``max_len + 1``
        items of each sequence (``targets`` is ``seq`` shifted by one, as ``sequence_examples`` makes them).

        Returns logits for the masked positions only, ``(M, n_items + 1)``, and their cross-entropy;
        without targets, ``score(seq)`` (the next item after ``seq``) and no loss.
        """
        if targets is None:
            return self.score(seq), None
        window = torch.cat([seq[:, :1], targets], dim=1)  # (B, L)
        masked = self.cloze_mask(window)  # (B, L)
        h = self.encode(window.masked_fill(masked, self.mask_token))  # (B, L, C)
        logits = self.logits(h[masked])  # (M, n_items + 1)
        return logits, F.cross_entropy(logits, window[masked])

    def score(self, seq: torch.Tensor) -> torch.Tensor:
        """The served graph: ``(B, T)`` left-padded items -> ``(B, n_items + 1)``, read at an appended mask."""
        return self.logits(self._at_mask(seq))  # (B, n_items + 1)

    def session(self, seq: torch.Tensor) -> torch.Tensor:
        """The retrieval graph: ``(B, T)`` -> ``(B, C + 1)``, the state at the mask and a 1, whose
        products with ``item_vectors`` are ``score`` (the 1 meets the output bias)."""
        h = self._at_mask(seq)
        return torch.cat([h, torch.ones_like(h[:, :1])], dim=1)

    def item_vectors(self) -> torch.Tensor:
        """``(n_items + 1, C + 1)``: the tied embeddings (not the mask token's) and the output bias."""
        return torch.cat([self.item_emb.weight[: self.config.n_items + 1], self.out_bias[:, None]], dim=1)

    def _at_mask(self, seq: torch.Tensor) -> torch.Tensor:
        masked = torch.cat([seq, torch.full_like(seq[:, :1], self.mask_token)], dim=1)  # (B, T + 1)
        return self.encode(masked, last_only=True)[:, -1, :]  # (B, C)

