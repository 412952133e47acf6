"""Shared fixtures: tiny hand-made training data, and ml-100k with a leave-last-out hold-out.

The hold-out check lives here rather than in ``streamrec.eval`` so these tests pin the models'
behaviour on their own: per user, the last item is held out, every model trains on all users'
remaining items, and HR@10 asks whether the held-out item is among the 10 best-scored items of
the whole catalogue with the user's own history excluded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from streamrec.data.movielens import load
from streamrec.models.base import Recommender, TrainData, top_k

MakeData = Callable[..., TrainData]


def tiny_items(
    n_items: int, genres: Sequence[str] | None = None, years: Sequence[int | None] | None = None
) -> pd.DataFrame:
    genres = list(genres) if genres is not None else ["Drama"] * n_items
    years = list(years) if years is not None else [1990] * n_items
    return pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(1, n_items + 1)],
            "item_idx": np.arange(1, n_items + 1, dtype=np.int32),
            "title": [f"Movie {i}" for i in range(1, n_items + 1)],
            "year": pd.array(years, dtype="Int16"),
            "genres": genres,
        }
    )


@pytest.fixture
def make_data() -> MakeData:
    """``make_data([[1, 2], [2, 3]], n_items=5, timestamps=..., items=...)``: a ``TrainData``.

    Timestamps default to one event per day, counted from the start of each sequence.
    """

    def make(
        sequences: Sequence[Sequence[int]],
        n_items: int,
        timestamps: Sequence[Sequence[float]] | None = None,
        items: pd.DataFrame | None = None,
    ) -> TrainData:
        seqs = [np.asarray(s, dtype=np.int32) for s in sequences]
        if timestamps is None:
            stamps = [np.arange(len(s), dtype=np.int64) * 86_400 for s in seqs]
        else:
            stamps = [np.asarray(t, dtype=np.int64) for t in timestamps]
        return TrainData(seqs, stamps, n_items, items if items is not None else tiny_items(n_items))

    return make


@dataclass(frozen=True)
class HoldOut:
    train: TrainData
    histories: list[np.ndarray]
    targets: np.ndarray

    def hit_rate(self, model: Recommender, k: int = 10, batch: int = 256) -> float:
        hits = 0
        for lo in range(0, len(self.targets), batch):
            hist = self.histories[lo : lo + batch]
            idx, _ = top_k(model.score(hist), k, hist)
            hits += int((idx == self.targets[lo : lo + batch, None]).any(axis=1).sum())
        return hits / len(self.targets)

    def random_hit_rate(self, k: int = 10) -> float:
        """The expected HR@k of uniformly random scores: k over the number of candidates, averaged."""
        candidates = np.array([self.train.n_items - len(np.unique(h)) for h in self.histories], dtype=np.float64)
        return float(np.mean(np.minimum(k, candidates) / candidates))


@pytest.fixture(scope="session")
def ml100k_holdout(tmp_path_factory: pytest.TempPathFactory) -> HoldOut:
    ml = load("ml-100k", tmp_path_factory.mktemp("data"))
    inter = ml.interactions  # sorted by time, ties in file order; a stable group-by keeps that order
    seqs, stamps, targets = [], [], []
    for _, user in inter.groupby("user_id", sort=True):
        items = user["item_idx"].to_numpy(np.int32)
        seqs.append(items[:-1])
        stamps.append(user["timestamp"].to_numpy(np.int64)[:-1])
        targets.append(items[-1])
    train = TrainData(seqs, stamps, ml.n_items, ml.items)
    return HoldOut(train, seqs, np.array(targets, dtype=np.int64))


def cyclic_fit(model, sequences: Sequence[np.ndarray], n_items: int, epochs: int) -> tuple[list[float], float, float]:  # type: ignore[no-untyped-def]
    """Train a padded-batch model (SASRec, BERT4Rec) on ``sequences`` and return its epoch losses and its
    HR@1 and HR@10 at predicting each sequence's last item from the rest: the overfitting check."""
    from streamrec.train import TorchSequenceRecommender, TrainConfig, sequence_examples, train

    max_len = model.config.max_len
    result = train(model, sequence_examples(sequences, max_len), None,
                   TrainConfig(epochs=epochs, batch_size=16, lr=5e-3, progress=False))
    scorer = TorchSequenceRecommender.from_module(model, n_items, max_len)
    prefixes, targets = [s[:-1] for s in sequences], np.array([s[-1] for s in sequences])
    top, _ = top_k(scorer.score(prefixes), 10)
    return ([r.loss for r in result.history], float((top[:, 0] == targets).mean()),
            float((top == targets[:, None]).any(axis=1).mean()))
