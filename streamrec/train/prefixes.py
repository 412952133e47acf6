"""Random prefixes: the epoch steps of a model that reads one history and predicts one next item
(SR-GNN, whose graph is built from the whole input, so one input cannot carry a target per position).

Each epoch draws ``per_sequence`` cut points in every training sequence of two items or more; a cut
at t gives the input ``s[max(0, t - max_len):t]``, left-padded, and the target ``s[t]``. Redrawn each
epoch, the cuts cover a sequence's prefixes over the epochs as SR-GNN's augmentation does (every
prefix of every session), at a cost per epoch that does not grow with the sequences' length.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from streamrec.models.sequence import left_pad

__all__ = ["RandomPrefixes", "draw_prefixes"]


def draw_prefixes(sequences: Sequence[np.ndarray], per_sequence: int, max_len: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs (N, max_len), targets (N,))`` int64: ``per_sequence`` random cuts of each usable sequence."""
    inputs, targets = [], []
    for seq in sequences:
        if len(seq) < 2:
            continue
        for t in rng.integers(1, len(seq), size=per_sequence):
            inputs.append(seq[max(0, t - max_len):t])
            targets.append(seq[t])
    return left_pad(inputs, max_len), np.asarray(targets, dtype=np.int64)


@dataclass(frozen=True)
class RandomPrefixes:
    """Shuffled mini-batches of fresh random prefixes for ``model(inputs, targets (B,)) -> (logits, loss)``."""

    sequences: Sequence[np.ndarray]
    max_len: int
    per_sequence: int = 8

    def n_steps(self, batch_size: int) -> int:
        usable = sum(1 for s in self.sequences if len(s) >= 2)
        return -(-usable * self.per_sequence // batch_size)

    def losses(self, model: nn.Module, batch_size: int, device: torch.device,
               rng: np.random.Generator) -> Iterator[torch.Tensor]:
        inputs, targets = draw_prefixes(self.sequences, self.per_sequence, self.max_len, rng)
        order = rng.permutation(len(targets))
        for lo in range(0, len(order), batch_size):
            idx = order[lo:lo + batch_size]
            _, loss = model(torch.from_numpy(inputs[idx]).to(device), torch.from_numpy(targets[idx]).to(device))
            yield loss
