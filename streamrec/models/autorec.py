"""AutoRec (Sedhain et al., 2015) for implicit feedback: a history's items in, a score for every item out.

The encoder is the paper's: the input vector (here the history's multi-hot vector, as an
embedding sum so that it exports), an affine map and a sigmoid. The decoder is its identity-output
affine map back to the catalogue. The input is scaled to unit length (divided by the square root of
the number of items, as Mult-DAE does), so that long and short histories reach the sigmoid on the
same scale.

Training is masked, not denoising, and the mask is the future. The paper reconstructs the observed
ratings with a squared error, which with implicit feedback rewards copying the input back; the
served task excludes the history and asks for the next item. So every prefix of a sequence is an
input, and the item after it is the target of a softmax cross-entropy over the whole catalogue
(the Mult-DAE likelihood). All prefixes of a sequence cost one cumulative sum. ``item_dropout``
adds the denoising on top: each item of a training sequence is dropped from the input of every
later prefix with that probability.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from streamrec.errors import ConfigError
from streamrec.models.bag import pool, prefix_pool

__all__ = ["AutoRec", "AutoRecConfig"]


@dataclass(frozen=True, kw_only=True)
class AutoRecConfig:
    n_items: int
    max_len: int = 200  # the most recent items the input holds
    hidden: int = 256
    item_dropout: float = 0.2
    dropout: float = 0.2  # on the hidden layer

    def __post_init__(self) -> None:
        if min(self.n_items, self.max_len, self.hidden) < 1:
            raise ConfigError(f"n_items, max_len and hidden must be positive; got {self}")
        if not (0 <= self.item_dropout < 1 and 0 <= self.dropout < 1):
            raise ConfigError(f"item_dropout and dropout must lie in [0, 1); got {self.item_dropout}, {self.dropout}")


class AutoRec(nn.Module):
    def __init__(self, config: AutoRecConfig) -> None:
        super().__init__()
        self.config = c = config
        self.encode = nn.Embedding(c.n_items + 1, c.hidden, padding_idx=0)  # V: the encoder's weights, a row per item
        self.encode_bias = nn.Parameter(torch.zeros(c.hidden))  # mu
        self.drop = nn.Dropout(c.dropout)
        self.decode = nn.Linear(c.hidden, c.n_items + 1)  # W and b

    def _hidden(self, bag: torch.Tensor) -> torch.Tensor:
        return self.drop(torch.sigmoid(bag + self.encode_bias))

    def forward(self, seq: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Training: the next item after every prefix (``targets`` (B, T), 0 where there is none):
        logits (M, V) and the cross-entropy. Without targets: the scores after the last item, (B, V)."""
        if targets is None:
            return self.score(seq), None
        if self.training and self.config.item_dropout > 0:
            kept = torch.rand(seq.shape, device=seq.device) >= self.config.item_dropout
            seq = seq * kept
        keep = targets > 0  # (B, T)
        bags = prefix_pool(self.encode(seq), seq, "sqrt")[keep]  # (M, H)
        logits = self.decode(self._hidden(bags))  # (M, V)
        return logits, F.cross_entropy(logits, targets[keep])

    def score(self, seq: torch.Tensor) -> torch.Tensor:
        """The served graph: ``(B, T)`` left-padded item indices -> ``(B, n_items + 1)`` scores."""
        return self.decode(self._hidden(pool(self.encode(seq), seq, "sqrt")))
