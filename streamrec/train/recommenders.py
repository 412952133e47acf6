"""The torch sequence models as ``Recommender``s, the names ``streamrec.eval.factory`` builds:
``sasrec``, ``gru4rec``, ``bert4rec``, ``neumf``, ``autorec``, ``srgnn`` and ``lightgcn`` for
``streamrec evaluate`` and the ranking pipeline.

``fit`` trains a fresh network, sized by the training data's catalogue, with the shared loop;
``score`` goes through ``TorchSequenceRecommender``. No validation cases reach ``fit``, so each
trains for a fixed number of epochs and keeps the last weights (``streamrec train`` is the one
that early-stops on validation). They live here, not beside the networks, because a model file
never imports the trainer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from torch import nn

from streamrec.models.autorec import AutoRec, AutoRecConfig
from streamrec.models.base import TrainData
from streamrec.models.bert4rec import Bert4Rec, Bert4RecConfig
from streamrec.models.gru4rec import GRU4RecConfig
from streamrec.models.lightgcn import LightGCN, LightGCNConfig
from streamrec.models.neumf import NeuMF, NeuMFConfig
from streamrec.models.recommend import item_counts
from streamrec.models.sasrec import SASRec, SASRecConfig
from streamrec.models.srgnn import SRGNN, SRGNNConfig
from streamrec.train.adapter import TorchSequenceRecommender
from streamrec.train.batches import sequence_examples
from streamrec.train.graph import BPRTriples
from streamrec.train.gru4rec_fit import fit_gru4rec, train_config
from streamrec.train.loop import EpochSteps, TrainConfig, seed_everything, train
from streamrec.train.prefixes import RandomPrefixes

__all__ = ["AutoRecRecommender", "Bert4RecRecommender", "GRU4RecRecommender", "LightGCNRecommender",
           "NeuMFRecommender", "SASRecRecommender", "SRGNNRecommender", "fit_for_epochs"]


def fit_for_epochs(model: nn.Module, steps: Sequence[np.ndarray] | EpochSteps, *, epochs: int, seed: int,
                   name: str, lr: float = 2e-3, batch_size: int = 128) -> TorchSequenceRecommender:
    """Train ``model`` for ``epochs``, no validation, and wrap it as a ``Recommender``. ``steps`` is its
    epoch strategy, or training sequences for padded batches (SASRec, BERT4Rec, NeuMF, AutoRec)."""
    config = model.config  # type: ignore[union-attr]
    epoch = sequence_examples(steps, config.max_len) if isinstance(steps, Sequence) else steps
    train(model, epoch, None, TrainConfig(epochs=epochs, seed=seed, lr=lr, batch_size=batch_size, progress=False))
    return TorchSequenceRecommender.from_module(model, config.n_items, config.max_len, name=name)


class _Trained:
    """``score`` through the adapter ``fit`` made."""

    _scorer: TorchSequenceRecommender

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self._scorer.score(histories)


@dataclass
class SASRecRecommender(_Trained):
    """``sasrec``: SASRec's default network; sampled-ce negatives, when configured, follow the
    training data's ``item_counts``."""

    epochs: int = 20
    seed: int = 0
    name: str = "sasrec"

    def fit(self, data: TrainData) -> SASRecRecommender:
        seed_everything(self.seed)
        model = SASRec(SASRecConfig(n_items=data.n_items))
        model.set_sampling_distribution(item_counts(data))
        self._scorer = fit_for_epochs(model, data.sequences, epochs=self.epochs, seed=self.seed, name=self.name)
        return self


@dataclass
class Bert4RecRecommender(_Trained):
    """``bert4rec``: as ``sasrec``. The Cloze task learns less per epoch than next-item training (a
    fifth of the positions carry a loss), so it gets more epochs."""

    epochs: int = 50
    seed: int = 0
    name: str = "bert4rec"

    def fit(self, data: TrainData) -> Bert4RecRecommender:
        seed_everything(self.seed)
        model = Bert4Rec(Bert4RecConfig(n_items=data.n_items))
        self._scorer = fit_for_epochs(model, data.sequences, epochs=self.epochs, seed=self.seed, name=self.name)
        return self


@dataclass
class GRU4RecRecommender(_Trained):
    """``gru4rec``: session-parallel training (``fit_gru4rec``) for ``epochs`` within ``budget_s``
    seconds: the evaluate command fits every model it names, so an unbounded fit would stall it."""

    epochs: int = 10
    budget_s: float | None = 300.0
    seed: int = 0
    name: str = "gru4rec"

    def fit(self, data: TrainData) -> GRU4RecRecommender:
        config = GRU4RecConfig(n_items=data.n_items)
        settings = train_config(epochs=self.epochs, seed=self.seed, budget_s=self.budget_s, progress=False)
        model, _ = fit_gru4rec(data, config, None, settings)
        self._scorer = TorchSequenceRecommender.from_module(model, config.n_items, config.max_len, name=self.name)
        return self


# The four below train with ``streamrec train``'s default learning rates and batches (its ``BUILDERS``),
# for a fixed number of epochs that fits ML-1M in a few minutes on two cores.


@dataclass
class NeuMFRecommender(_Trained):
    """``neumf``: GMF and MLP towers over a folded-in session vector; padded prefixes, sampled negatives."""

    epochs: int = 30
    seed: int = 0
    name: str = "neumf"

    def fit(self, data: TrainData) -> NeuMFRecommender:
        seed_everything(self.seed)
        model = NeuMF(NeuMFConfig(n_items=data.n_items))
        self._scorer = fit_for_epochs(model, data.sequences, epochs=self.epochs, seed=self.seed, name=self.name, lr=5e-3)
        return self


@dataclass
class AutoRecRecommender(_Trained):
    """``autorec``: the history's multi-hot vector through one sigmoid layer back to every item."""

    epochs: int = 20
    seed: int = 0
    name: str = "autorec"

    def fit(self, data: TrainData) -> AutoRecRecommender:
        seed_everything(self.seed)
        model = AutoRec(AutoRecConfig(n_items=data.n_items))
        self._scorer = fit_for_epochs(model, data.sequences, epochs=self.epochs, seed=self.seed, name=self.name, lr=5e-3)
        return self


@dataclass
class SRGNNRecommender(_Trained):
    """``srgnn``: the session graph's gated GNN; random prefixes each epoch."""

    epochs: int = 10
    seed: int = 0
    name: str = "srgnn"

    def fit(self, data: TrainData) -> SRGNNRecommender:
        seed_everything(self.seed)
        model = SRGNN(config := SRGNNConfig(n_items=data.n_items))
        self._scorer = fit_for_epochs(model, RandomPrefixes(data.sequences, config.max_len), epochs=self.epochs,
                                      seed=self.seed, name=self.name, lr=3e-3)
        return self


@dataclass
class LightGCNRecommender(_Trained):
    """``lightgcn``: BPR over the sequence-item graph, served as the mean of the propagated item vectors."""

    epochs: int = 60
    seed: int = 0
    name: str = "lightgcn"

    def fit(self, data: TrainData) -> LightGCNRecommender:
        seed_everything(self.seed)
        model = LightGCN(LightGCNConfig(n_items=data.n_items, n_users=max(1, len(data.sequences))))
        self._scorer = fit_for_epochs(model, BPRTriples(data.sequences, data.n_items), epochs=self.epochs,
                                      seed=self.seed, name=self.name, lr=2e-2, batch_size=8192)
        return self
