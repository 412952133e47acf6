"""GRU4Rec (Hidasi et al., 2016; Hidasi & Karatzoglou, 2018), after the official PyTorch code.

Training is session-parallel and one step at a time: each lane of the mini-batch holds one
session, the hidden state is carried from step to step (detached, as in the original) and reset
when a lane starts a new session (the training side's ``gru4rec_iterator``). The output scores only
the mini-batch's own targets plus ``n_sample`` negatives shared by the whole mini-batch, drawn
from popularity ** ``sample_alpha``; the diagonal of that ``(B, B + S)`` matrix holds the targets.

``training="padded"`` trains the same network the way SASRec trains: shuffled mini-batches of whole
(left-padded) sequences, each run from a zero state, with the full softmax cross-entropy over the
catalogue at every position (``sequence_loss``). Session-parallel training suits many short
sessions (protocol B); the padded form suits long user histories (protocol A), where carrying one
state across a user's 165 items one detached step at a time learns little about long contexts.

``score`` is the inference graph (the one exported to ONNX): left-padded histories in, scores
over the whole catalogue out, from the hidden state after each history's last item.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from streamrec.errors import ConfigError

__all__ = ["GRU4Rec", "GRU4RecConfig", "Loss", "Training", "bpr_max_loss", "cross_entropy_loss"]

Loss = Literal["cross-entropy", "bpr-max"]
Training = Literal["session-parallel", "padded"]


@dataclass(frozen=True, kw_only=True)
class GRU4RecConfig:
    n_items: int
    max_len: int = 50  # inference only: the longest history ``score`` is given (the adapter's padding)
    hidden_size: int = 100
    n_layers: int = 1
    dropout_embed: float = 0.0
    dropout_hidden: float = 0.0
    loss: Loss = "cross-entropy"
    n_sample: int = 512  # extra negatives per mini-batch, besides the other lanes' targets
    sample_alpha: float = 0.5  # 0: uniform negatives, 1: popularity-proportional
    sample_cache: int = 64  # mini-batches' worth of negatives drawn at once
    bpreg: float = 1.0  # score regularisation of BPR-max
    elu_param: float = 0.5  # BPR-max applies ELU(elu_param) to the scores; 0 disables it
    # The official default: items enter through the output embedding, so one matrix serves both.
    constrained_embedding: bool = True
    embedding_size: int = 0  # separate input embedding when not constrained; 0 means hidden_size
    training: Training = "session-parallel"  # or "padded": whole sequences, full cross-entropy at every position

    def __post_init__(self) -> None:
        if self.n_items < 1 or self.max_len < 1 or self.hidden_size < 1 or self.n_layers < 1:
            raise ConfigError(f"n_items, max_len, hidden_size and n_layers must be positive; got {self}")
        if not (0 <= self.dropout_embed < 1 and 0 <= self.dropout_hidden < 1):
            raise ConfigError(f"dropout must lie in [0, 1); got {self.dropout_embed}, {self.dropout_hidden}")
        if self.loss not in ("cross-entropy", "bpr-max"):
            raise ConfigError(f"loss must be 'cross-entropy' or 'bpr-max', got {self.loss!r}")
        if self.training not in ("session-parallel", "padded"):
            raise ConfigError(f"training must be 'session-parallel' or 'padded', got {self.training!r}")
        if self.n_sample < 0 or self.sample_cache < 1 or self.embedding_size < 0:
            raise ConfigError(f"n_sample >= 0, sample_cache >= 1 and embedding_size >= 0 needed; got n_sample="
                              f"{self.n_sample}, sample_cache={self.sample_cache}, "
                              f"embedding_size={self.embedding_size}")


def cross_entropy_loss(logits: torch.Tensor) -> torch.Tensor:
    """Softmax cross-entropy with the target on the diagonal of ``logits`` (B, B + S)."""
    B = logits.shape[0]
    return F.cross_entropy(logits, torch.arange(B, device=logits.device))


def bpr_max_loss(logits: torch.Tensor, bpreg: float, elu_param: float) -> torch.Tensor:
    """BPR-max: the BPR loss against a softmax-weighted mix of the negatives, plus a score penalty.

    Negatives are every column but the row's own target (the diagonal)."""
    B = logits.shape[0]
    if elu_param > 0:
        logits = F.elu(logits, elu_param)
    target = logits.diagonal().unsqueeze(1)  # (B, 1)
    not_target = ~torch.eye(B, logits.shape[1], dtype=torch.bool, device=logits.device)  # (B, B + S)
    weights = torch.softmax(logits.masked_fill(~not_target, -torch.inf), dim=1)  # (B, B + S), 0 on diagonal
    bpr = -torch.log((torch.sigmoid(target - logits) * weights).sum(1) + 1e-24)  # (B,)
    reg = bpreg * (logits.square() * weights).sum(1)  # (B,)
    return (bpr + reg).mean()


def _init_uniform(weight: torch.Tensor) -> None:
    """The official initialisation: uniform in +-sqrt(6 / (fan_in + fan_out))."""
    rows, cols = weight.shape
    bound = math.sqrt(6.0 / (rows + cols))
    nn.init.uniform_(weight, -bound, bound)


class GRU4Rec(nn.Module):
    def __init__(self, config: GRU4RecConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        H, V = c.hidden_size, c.n_items + 1  # row 0 is padding: never a target, masked by the caller
        self.out = nn.Embedding(V, H)  # output item vectors (Wy)
        self.out_bias = nn.Embedding(V, 1)  # (By)
        if c.constrained_embedding:
            self.embed = None
            embedding_size = H
        else:
            embedding_size = c.embedding_size or H
            self.embed = nn.Embedding(V, embedding_size)
            _init_uniform(self.embed.weight)
        self.drop_embed = nn.Dropout(c.dropout_embed)
        self.gru = nn.GRU(embedding_size, H, num_layers=c.n_layers, batch_first=True,
                          dropout=c.dropout_hidden if c.n_layers > 1 else 0.0)
        self.drop_hidden = nn.Dropout(c.dropout_hidden)
        _init_uniform(self.out.weight)
        nn.init.zeros_(self.out_bias.weight)
        for name, weight in self.gru.named_parameters():
            if name.startswith("weight"):
                for gate in weight.chunk(3, dim=0):  # reset, update and candidate blocks, each (H, in)
                    _init_uniform(gate.data)
            else:
                nn.init.zeros_(weight)

    def init_hidden(self, batch_size: int, device: torch.device | str | None = None) -> torch.Tensor:
        return torch.zeros(self.config.n_layers, batch_size, self.config.hidden_size, device=device)

    def _inputs(self, items: torch.Tensor) -> torch.Tensor:
        table = self.out if self.embed is None else self.embed
        return self.drop_embed(table(items))

    def _logits(self, h: torch.Tensor, items: torch.Tensor | None) -> torch.Tensor:
        """Scores of ``h`` (B, H) against ``items`` (N,), or the whole catalogue when ``None``."""
        if items is None:
            return h @ self.out.weight.T + self.out_bias.weight.T  # (B, V)
        return h @ self.out(items).T + self.out_bias(items).T  # (B, N)

    def forward(
        self,
        items: torch.Tensor,
        hidden: torch.Tensor,
        targets: torch.Tensor | None = None,
        negatives: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """One session-parallel step: ``items`` (B,) with ``hidden`` (L, B, H) -> ``(logits, loss, hidden)``.

        With ``targets`` (B,), ``logits`` are (B, B + S) over the mini-batch's targets then
        ``negatives`` (S,), and ``loss`` is the configured loss; without, ``logits`` cover the whole
        catalogue (B, n_items + 1) and ``loss`` is ``None``.
        """
        x = self._inputs(items).unsqueeze(1)  # (B, 1, E)
        out, hidden = self.gru(x, hidden)  # (B, 1, H), (L, B, H)
        h = self.drop_hidden(out[:, 0])  # (B, H)
        if targets is None:
            return self._logits(h, None), None, hidden
        columns = targets if negatives is None else torch.cat([targets, negatives])  # (B + S,)
        logits = self._logits(h, columns)  # (B, B + S)
        if self.config.loss == "cross-entropy":
            loss = cross_entropy_loss(logits)
        else:
            loss = bpr_max_loss(logits, self.config.bpreg, self.config.elu_param)
        return logits, loss, hidden

    def _run(self, seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Left-padded ``seq`` (B, T) rotated to right padding, so that every row starts the GRU from a zero
        state at step 0 and the padding never enters the recurrence: ``(outputs (B, T, H), lengths (B,),
        rotation (B, T))``, the outputs in the rotated order."""
        B, T = seq.shape
        lengths = (seq > 0).sum(1)  # (B,)
        steps = torch.arange(T, device=seq.device)  # (T,)
        rotate = (steps.unsqueeze(0) + (T - lengths).unsqueeze(1)) % T  # (B, T)
        out, _ = self.gru(self._inputs(seq.gather(1, rotate)))  # (B, T, H) real items first, then padding
        return out, lengths, rotate

    def sequence_loss(self, seq: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Padded training: ``seq`` and its next items ``targets`` (B, T), left-padded, 0 where there is no
        target -> logits (M, n_items + 1) at the M positions with one, and their cross-entropy."""
        out, _, rotate = self._run(seq)
        targets = targets.gather(1, rotate)  # (B, T) in the outputs' order
        keep = targets > 0
        logits = self._logits(self.drop_hidden(out[keep]), None)  # (M, V)
        return logits, F.cross_entropy(logits, targets[keep])

    def score(self, seq: torch.Tensor) -> torch.Tensor:
        """``seq`` (B, T) item indices left-padded with 0 -> scores (B, n_items + 1) after the last item.

        The output is read at each row's last real step. Written with gathers and one ``nn.GRU`` call so
        it exports to ONNX with dynamic batch and sequence axes (a single GRU node).
        """
        return self._logits(self._last_hidden(seq), None)  # (B, n_items + 1)

    def session(self, seq: torch.Tensor) -> torch.Tensor:
        """The retrieval graph: ``(B, T)`` -> ``(B, H + 1)``, the last hidden state and a 1, whose
        products with ``item_vectors`` are ``score`` (the 1 meets the output bias)."""
        h = self._last_hidden(seq)
        return torch.cat([h, torch.ones_like(h[:, :1])], dim=1)

    def item_vectors(self) -> torch.Tensor:
        """``(n_items + 1, H + 1)``: the output item vectors and their bias."""
        return torch.cat([self.out.weight, self.out_bias.weight], dim=1)

    def _last_hidden(self, seq: torch.Tensor) -> torch.Tensor:
        out, lengths, _ = self._run(seq)
        B = seq.shape[0]
        last = (lengths - 1).clamp(min=0).view(B, 1, 1).expand(B, 1, out.shape[2])  # (B, 1, H)
        h = out.gather(1, last).squeeze(1)  # (B, H)
        return h * (lengths > 0).unsqueeze(1).to(h.dtype)  # empty history: the initial (zero) state
