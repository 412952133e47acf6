"""GRU4Rec's epochs for the shared training loop (``streamrec.train.loop.train``): session-parallel steps,
or padded sequences (``PaddedSequences``, ``GRU4RecConfig.training="padded"``).

Each step feeds every lane's current item and scores the lanes' next items plus ``n_sample``
negatives shared by the mini-batch. The hidden state is carried from step to step, detached (the
official code backpropagates one step only), and a lane's state is zeroed when it starts a new
session (the iterator's reset hook). Everything else (optimizer, validation, early stopping, best
state, budget, seeds, device) is the shared loop's; ``train_config`` gives its settings GRU4Rec's
own defaults.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from streamrec.eval.protocols import Cases
from streamrec.models.base import TrainData
from streamrec.models.gru4rec import GRU4Rec, GRU4RecConfig
from streamrec.models.recommend import item_counts
from streamrec.train.batches import batches, window_examples
from streamrec.train.gru4rec_iterator import NegativeSampler, session_parallel_batches
from streamrec.train.loop import EpochSteps, PaddedBatches, TrainConfig, TrainResult, seed_everything, train

__all__ = ["PaddedSequences", "SessionParallel", "epoch_steps", "fit_gru4rec", "session_order", "train_config"]


def session_order(data: TrainData) -> np.ndarray:
    """Sessions by start time, as GRU4Rec feeds them (ties keep their order)."""
    starts = np.array([t[0] if len(t) else 0 for t in data.timestamps], dtype=np.int64)
    return np.argsort(starts, kind="stable")


class SessionParallel:
    """``EpochSteps`` for ``GRU4Rec``: one epoch of session-parallel steps over ``data``'s sessions,
    in start-time order, with negatives drawn from the model config's popularity ** ``sample_alpha``."""

    def __init__(self, data: TrainData) -> None:
        self.data = data
        self.order = session_order(data)
        self.counts = item_counts(data)
        self._n_steps: dict[int, int] = {}

    def n_steps(self, batch_size: int) -> int:
        if batch_size not in self._n_steps:  # one dry pass: the iterator alone is cheap
            batches = session_parallel_batches(self.data.sequences, batch_size, lambda fresh: None, self.order)
            self._n_steps[batch_size] = sum(1 for _ in batches)
        return self._n_steps[batch_size]

    def losses(self, model: nn.Module, batch_size: int, device: torch.device,
               rng: np.random.Generator) -> Iterator[torch.Tensor]:
        if not isinstance(model, GRU4Rec):
            raise TypeError(f"SessionParallel trains a GRU4Rec, not a {type(model).__name__}")
        c = model.config
        if c.n_items != self.data.n_items:
            raise ValueError(f"the model has {c.n_items} items but the data has {self.data.n_items}")
        sampler = NegativeSampler(self.counts, c.sample_alpha, c.n_sample, c.sample_cache, rng) if c.n_sample else None
        hidden = model.init_hidden(0, device)

        def reset(fresh: np.ndarray) -> None:
            nonlocal hidden
            if fresh.all():  # the first step: every lane fresh
                hidden = model.init_hidden(len(fresh), device)
            else:
                hidden = hidden.detach().masked_fill(torch.from_numpy(fresh).to(device).view(1, -1, 1), 0.0)

        for inputs, targets in session_parallel_batches(self.data.sequences, batch_size, reset, self.order):
            negatives = torch.from_numpy(sampler()).to(device) if sampler is not None else None
            _, loss, hidden = model(torch.from_numpy(inputs).to(device), hidden.detach(),
                                    torch.from_numpy(targets).to(device), negatives)
            yield loss  # type: ignore[misc]


@dataclass(frozen=True)
class PaddedSequences(PaddedBatches):
    """``PaddedBatches`` for ``GRU4Rec`` with ``training="padded"``: its ``forward`` is the session-parallel
    step, so the loss of a padded batch is ``GRU4Rec.sequence_loss`` (the full cross-entropy at every position)."""

    def losses(self, model: nn.Module, batch_size: int, device: torch.device,
               rng: np.random.Generator) -> Iterator[torch.Tensor]:
        if not isinstance(model, GRU4Rec):
            raise TypeError(f"PaddedSequences trains a GRU4Rec, not a {type(model).__name__}")
        for inputs, targets in batches(self.examples, batch_size, rng):
            _, loss = model.sequence_loss(torch.from_numpy(inputs).to(device), torch.from_numpy(targets).to(device))
            yield loss


def epoch_steps(data: TrainData, config: GRU4RecConfig) -> EpochSteps:
    """The steps ``config.training`` names; padded, every transition of the data in windows of
    ``config.max_len`` inputs (``window_examples``), the longest history the model is served."""
    if config.training == "padded":
        return PaddedSequences(window_examples(data.sequences, config.max_len))
    return SessionParallel(data)


def train_config(**overrides: Any) -> TrainConfig:
    """The loop's settings with GRU4Rec's defaults (the official code's mini-batches of 64 sessions,
    10 epochs), then ``overrides`` (any ``TrainConfig`` field, e.g. ``budget_s`` or ``patience``)."""
    return TrainConfig(**{"batch_size": 64, "epochs": 10, **overrides})


def fit_gru4rec(data: TrainData, config: GRU4RecConfig, validation: Cases | None = None,
                settings: TrainConfig | None = None) -> tuple[GRU4Rec, TrainResult]:
    """A fresh GRU4Rec trained on ``data.sequences`` (sessions) by the shared loop, in eval mode.

    ``settings`` default to ``train_config(progress=False)``. With ``validation`` the model
    early-stops on it and comes back with its best epoch's weights, else with the last ones.
    """
    if config.n_items != data.n_items:
        raise ValueError(f"config.n_items is {config.n_items} but the data has {data.n_items} items")
    settings = settings if settings is not None else train_config(progress=False)
    seed_everything(settings.seed)  # the initial weights; the loop seeds again for dropout and negatives
    model = GRU4Rec(config)
    return model, train(model, epoch_steps(data, config), validation, settings)
