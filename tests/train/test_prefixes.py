"""Random prefixes: every input is a real prefix, and the target the item that follows it."""

from __future__ import annotations

import numpy as np
import torch

from streamrec.train.prefixes import RandomPrefixes, draw_prefixes


def test_each_cut_is_a_prefix_of_at_most_max_len_items_and_its_next_item() -> None:
    sequences = [np.arange(1, 31), np.array([7, 8]), np.array([9]), np.array([4, 5, 6, 4, 5])]
    inputs, targets = draw_prefixes(sequences, 50, 6, np.random.default_rng(0))
    assert inputs.shape == (150, 6) and targets.shape == (150,)  # the one-item sequence has no target
    owners = np.repeat([0, 1, 3], 50)
    cuts = set()
    for row, target, owner in zip(inputs, targets, owners, strict=True):
        seq, prefix = sequences[owner], row[row > 0]
        assert 1 <= len(prefix) <= 6 and (row[: 6 - len(prefix)] == 0).all()  # left-padded
        matches = [t for t in range(1, len(seq)) if seq[t] == target and list(seq[max(0, t - 6):t]) == list(prefix)]
        assert matches, (owner, prefix, target)
        cuts.add((owner, matches[0]))
    assert len([c for c in cuts if c[0] == 0]) > 20  # redrawn cuts spread over the sequence


def test_an_epoch_is_per_sequence_inputs_in_mini_batches() -> None:
    steps = RandomPrefixes([np.arange(1, 11)] * 5, max_len=4, per_sequence=3)
    sizes = []

    def model(inputs: torch.Tensor, targets: torch.Tensor) -> tuple[None, torch.Tensor]:
        sizes.append(len(targets))
        assert inputs.shape == (len(targets), 4) and inputs.dtype == torch.int64
        return None, torch.zeros(())

    losses = list(steps.losses(model, 4, torch.device("cpu"), np.random.default_rng(0)))  # type: ignore[arg-type]
    assert len(losses) == steps.n_steps(4) == 4 and sizes == [4, 4, 4, 3]
