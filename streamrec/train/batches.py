"""Training examples from ``TrainData`` sequences, and the shuffled batches the loop consumes.

Next-item examples: each sequence, cut to its last ``max_len + 1`` items, gives the input
``s[:-1]`` and the targets ``s[1:]`` (shifted by one), both LEFT-padded with 0 to ``max_len``.
Target 0 means "no target here", which the models' losses ignore.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from streamrec.models.sequence import left_pad

__all__ = ["Examples", "batches", "left_pad", "sequence_examples", "window_examples"]


@dataclass(frozen=True, eq=False)
class Examples:
    inputs: np.ndarray  # int64 (N, max_len)
    targets: np.ndarray  # int64 (N, max_len)

    def __len__(self) -> int:
        return len(self.inputs)


def sequence_examples(sequences: Sequence[np.ndarray], max_len: int) -> Examples:
    """One example per sequence of at least two items (shorter ones have no next item to learn)."""
    if max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    usable = [np.asarray(s, dtype=np.int64)[-(max_len + 1):] for s in sequences if len(s) >= 2]
    return Examples(left_pad([s[:-1] for s in usable], max_len), left_pad([s[1:] for s in usable], max_len))


def window_examples(sequences: Sequence[np.ndarray], max_len: int) -> Examples:
    """Every transition of every sequence, as examples of at most ``max_len`` inputs: a sequence is cut from
    its end into windows of ``max_len + 1`` items that overlap by one, so each item after the first is a
    target exactly once, with up to ``max_len`` items before it in its window (a model that reads at most
    ``max_len`` items at inference then trains on contexts of the lengths it is served)."""
    if max_len < 1:
        raise ValueError(f"max_len must be positive, got {max_len}")
    windows = []
    for seq in sequences:
        seq = np.asarray(seq, dtype=np.int64)
        for end in range(len(seq), 1, -max_len):
            windows.append(seq[max(0, end - max_len - 1):end])
    return sequence_examples(windows, max_len)


def batches(examples: Examples, batch_size: int, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Shuffled ``(inputs, targets)`` mini-batches covering every example once."""
    order = rng.permutation(len(examples))
    for lo in range(0, len(order), batch_size):
        idx = order[lo:lo + batch_size]
        yield examples.inputs[idx], examples.targets[idx]
