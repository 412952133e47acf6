"""The torch sequence models as ``Recommender``s, the names ``streamrec.eval.factory`` builds:
``sasrec``, ``gru4rec`` and ``bert4rec`` for ``streamrec evaluate`` and the ranking pipeline.

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

from streamrec.models.base import TrainData
from streamrec.models.bert4rec import Bert4Rec, Bert4RecConfig
from streamrec.models.gru4rec import GRU4RecConfig
from streamrec.models.recommend import item_counts
from streamrec.models.sasrec import SASRec, SASRecConfig
from streamrec.train.adapter import TorchSequenceRecommender
from streamrec.train.batches import sequence_examples
from streamrec.train.gru4rec_fit import fit_gru4rec, train_config
from streamrec.train.loop import TrainConfig, seed_everything, train

__all__ = ["Bert4RecRecommender", "GRU4RecRecommender", "SASRecRecommender", "fit_for_epochs"]


def fit_for_epochs(model: nn.Module, sequences: Sequence[np.ndarray], *, epochs: int, seed: int,
                   name: str) -> TorchSequenceRecommender:
    """Train a padded-batch model (SASRec, BERT4Rec) on ``sequences`` for ``epochs``, no validation,
    and wrap it as a ``Recommender``."""
    config = model.config  # type: ignore[union-attr]
    train(model, sequence_examples(sequences, config.max_len), None,
          TrainConfig(epochs=epochs, seed=seed, progress=False))
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
