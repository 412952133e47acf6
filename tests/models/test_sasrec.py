from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec.data.movielens import MovieLens, load
from streamrec.eval import LeaveOneOut, evaluate, split
from streamrec.eval.registry import create
from streamrec.models.base import TrainData, top_k
from streamrec.models.popularity import MostPopular
from streamrec.models.sasrec import SASRec, SASRecConfig
from streamrec.train import TorchSequenceRecommender, TrainConfig, sequence_examples, train

N_ITEMS = 40


def cyclic_sequences(n: int, length: int, seed: int = 0) -> list[np.ndarray]:
    """Every item is followed by the next one (modulo the catalogue): a pattern SASRec must learn exactly."""
    starts = np.random.default_rng(seed).integers(0, N_ITEMS, size=n)
    return [((s + np.arange(length)) % N_ITEMS + 1).astype(np.int64) for s in starts]


def test_score_has_a_column_per_item_plus_padding() -> None:
    model = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=8)).eval()
    seq = torch.tensor([[0, 0, 0, 1, 2], [3, 4, 5, 6, 7]])
    assert model.score(seq).shape == (2, N_ITEMS + 1)
    logits, loss = model(seq)
    assert logits.shape == (2, N_ITEMS + 1) and loss is None


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_padded_rows_produce_no_nans(mode: str) -> None:
    model = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=6))
    model.train(mode == "train")
    seq = torch.tensor([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 2], [1, 2, 3, 4, 5, 6]])
    targets = torch.tensor([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 2, 3], [2, 3, 4, 5, 6, 7]])
    logits, loss = model(seq, targets)
    assert torch.isfinite(logits).all() and loss is not None and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(model.score(seq)).all()


def test_left_padding_does_not_change_the_scores() -> None:
    model = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=8)).eval()
    with torch.no_grad():
        short = model.score(torch.tensor([[5, 6, 7]]))
        padded = model.score(torch.tensor([[0, 0, 0, 0, 0, 5, 6, 7]]))
        in_batch = model.score(torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]]))[:1]
    torch.testing.assert_close(short, padded, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(short, in_batch, atol=1e-5, rtol=1e-5)


def test_sasrec_overfits_a_tiny_cyclic_dataset() -> None:
    sequences = cyclic_sequences(64, 12)
    config = SASRecConfig(n_items=N_ITEMS, max_len=10, d_model=32, dropout=0.0)
    model = SASRec(config)
    result = train(model, sequence_examples(sequences, config.max_len), None,
                   TrainConfig(epochs=40, batch_size=16, lr=5e-3, progress=False))
    losses = [r.loss for r in result.history]
    assert losses[-1] < 0.2 * losses[0], losses
    scorer = TorchSequenceRecommender.from_module(model, N_ITEMS, config.max_len)
    prefixes, targets = [s[:-1] for s in sequences], np.array([s[-1] for s in sequences])
    top, _ = top_k(scorer.score(prefixes), 10)
    hits10 = (top == targets[:, None]).any(axis=1).mean()
    hits1 = (top[:, 0] == targets).mean()
    assert hits10 >= 0.98 and hits1 >= 0.9, (hits10, hits1)


def test_the_registry_builds_a_sasrec_that_fits_and_scores(make_data) -> None:  # type: ignore[no-untyped-def]
    model = create("sasrec")
    model.epochs = 2  # type: ignore[attr-defined]
    data: TrainData = make_data([list(s) for s in cyclic_sequences(8, 6)], n_items=N_ITEMS)
    scores = model.fit(data).score([np.array([1, 2, 3]), np.array([], dtype=np.int64)])
    assert scores.shape == (2, N_ITEMS + 1) and scores.dtype == np.float32
    assert np.isneginf(scores[:, 0]).all() and np.isfinite(scores[:, 1:]).all()


# ---------------------------------------------------------------- on the real ML-100K


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory: pytest.TempPathFactory) -> MovieLens:
    return load("ml-100k", Path(tmp_path_factory.mktemp("data")))


@pytest.mark.integration
def test_sasrec_beats_popularity_on_ml_100k_leave_one_out(ml100k: MovieLens) -> None:
    parts = split(ml100k, LeaveOneOut())
    config = SASRecConfig(n_items=parts.train.n_items, max_len=50)
    model = SASRec(config)
    result = train(model, sequence_examples(parts.train.sequences, config.max_len), parts.validation,
                   TrainConfig(budget_min=1.0, batch_size=32, patience=10, progress=False))  # more steps per minute
    assert result.history[-1].seconds < 100
    scorer = TorchSequenceRecommender.from_module(model, config.n_items, config.max_len, name="sasrec")
    sasrec = evaluate(scorer, parts.test, cutoffs=(10,), progress=False)
    pop = evaluate(MostPopular().fit(parts.train), parts.test, cutoffs=(10,), progress=False)
    assert sasrec["NDCG@10"] > 1.1 * pop["NDCG@10"], (sasrec, pop, result.best_epoch, len(result.history))
