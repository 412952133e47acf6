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

from abc import ABC, abstractmethod
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


class _FixedEpochs(_Trained, ABC):
    """``fit``: a fresh network from ``network`` trained for ``epochs`` on what ``steps`` makes of the data
    (padded sequences by default), with ``streamrec train``'s default learning rate and batch (its
    ``BUILDERS``). The epochs fit ML-1M in a few minutes on two cores."""

    epochs: int
    seed: int
    name: str
    lr: float = 2e-3
    batch_size: int = 128

    @abstractmethod
    def network(self, data: TrainData) -> nn.Module:
        """A fresh network sized by ``data``."""

    def steps(self, data: TrainData, model: nn.Module) -> Sequence[np.ndarray] | EpochSteps:
        return data.sequences

    def fit(self, data: TrainData) -> _FixedEpochs:
        seed_everything(self.seed)
        model = self.network(data)
        self._scorer = fit_for_epochs(model, self.steps(data, model), epochs=self.epochs, seed=self.seed,
                                      name=self.name, lr=self.lr, batch_size=self.batch_size)
        return self


@dataclass
class NeuMFRecommender(_FixedEpochs):
    """``neumf``: GMF and MLP towers over a folded-in session vector; padded prefixes, sampled negatives."""

    epochs: int = 30
    seed: int = 0
    name: str = "neumf"
    lr: float = 5e-3

    def network(self, data: TrainData) -> nn.Module:
        return NeuMF(NeuMFConfig(n_items=data.n_items))


@dataclass
class AutoRecRecommender(_FixedEpochs):
    """``autorec``: the history's multi-hot vector through one sigmoid layer back to every item."""

    epochs: int = 20
    seed: int = 0
    name: str = "autorec"
    lr: float = 5e-3

    def network(self, data: TrainData) -> nn.Module:
        return AutoRec(AutoRecConfig(n_items=data.n_items))


@dataclass
class SRGNNRecommender(_FixedEpochs):
    """``srgnn``: the session graph's gated GNN; random prefixes each epoch."""

    epochs: int = 10
    seed: int = 0
    name: str = "srgnn"
    lr: float = 3e-3

    def network(self, data: TrainData) -> nn.Module:
        return SRGNN(SRGNNConfig(n_items=data.n_items))

    def steps(self, data: TrainData, model: nn.Module) -> EpochSteps:
        return RandomPrefixes(data.sequences, model.config.max_len)  # type: ignore[union-attr]


@dataclass
class LightGCNRecommender(_FixedEpochs):
    """``lightgcn``: BPR over the sequence-item graph, served as the mean of the propagated item vectors."""

    epochs: int = 60
    seed: int = 0
    name: str = "lightgcn"
    lr: float = 2e-2
    batch_size: int = 8192

    def network(self, data: TrainData) -> nn.Module:
        return LightGCN(LightGCNConfig(n_items=data.n_items, n_users=max(1, len(data.sequences))))

    def steps(self, data: TrainData, model: nn.Module) -> EpochSteps:
        return BPRTriples(data.sequences, data.n_items)
