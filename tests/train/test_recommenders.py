"""The sequence models as ``Recommender``s that train themselves, as ``streamrec evaluate`` builds them."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.eval.factory import create
from streamrec.models.base import TrainData

N_ITEMS = 30


def training_data(sequences: list[np.ndarray], n_items: int) -> TrainData:
    stamps = [np.arange(len(s), dtype=np.int64) * 86_400 for s in sequences]
    return TrainData(sequences, stamps, n_items, None)  # type: ignore[arg-type]  # no metadata: unused


def cyclic_sequences(n: int, length: int, seed: int = 0) -> list[np.ndarray]:
    starts = np.random.default_rng(seed).integers(0, N_ITEMS, size=n)
    return [((s + np.arange(length)) % N_ITEMS + 1).astype(np.int64) for s in starts]


@pytest.mark.parametrize("name", ["sasrec", "bert4rec", "neumf", "autorec", "srgnn", "lightgcn"])
def test_the_registry_builds_a_model_that_fits_and_scores(name: str) -> None:
    model = create(name)
    model.epochs = 2  # type: ignore[attr-defined]
    scores = model.fit(training_data(cyclic_sequences(8, 6), N_ITEMS)).score([np.array([1, 2, 3]),
                                                                               np.array([], dtype=np.int64)])
    assert scores.shape == (2, N_ITEMS + 1) and scores.dtype == np.float32
    assert np.isneginf(scores[:, 0]).all() and np.isfinite(scores[:, 1:]).all()


def test_the_registry_builds_a_gru4rec_that_fits_and_scores_the_catalogue() -> None:
    model = create("gru4rec")
    model.fit(training_data([np.array(s) for s in ([1, 2, 3, 4], [2, 3, 4, 5], [1, 3, 5])], n_items=6))
    scores = model.score([np.array([1, 2], dtype=np.int64), np.array([], dtype=np.int64)])
    assert scores.shape == (2, 7) and scores.dtype == np.float32
    assert np.isneginf(scores[:, 0]).all() and np.isfinite(scores[:, 1:]).all()
