from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from streamrec.data.base import MovieLens
from streamrec.data.movielens import load
from streamrec.errors import ConfigError
from streamrec.eval import LeaveOneOut, evaluate, split
from streamrec.export import export_onnx
from streamrec.models.popularity import MostPopular
from streamrec.models.sasrec import Loss, SASRec, SASRecConfig
from streamrec.train import TorchSequenceRecommender, TrainConfig, seed_everything, sequence_examples, train
from tests.models.helpers import N_ITEMS, cyclic_fit, cyclic_sequences


def test_score_has_a_column_per_item_plus_padding() -> None:
    model = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=8)).eval()
    seq = torch.tensor([[0, 0, 0, 1, 2], [3, 4, 5, 6, 7]])
    assert model.score(seq).shape == (2, N_ITEMS + 1)
    logits, loss = model(seq)
    assert logits.shape == (2, N_ITEMS + 1) and loss is None


# 16 sampled negatives of 40 items: the sampled loss must still single out the next item
@pytest.mark.parametrize("loss", ["full-ce", "sampled-ce"])
def test_sasrec_overfits_a_tiny_cyclic_dataset(loss: Loss) -> None:
    sequences = cyclic_sequences(64, 12)
    config = SASRecConfig(n_items=N_ITEMS, max_len=10, d_model=32, dropout=0.0, loss=loss, n_negatives=16)
    seed_everything(0)  # the initial weights: the loop seeds only what follows
    model = SASRec(config)
    model.set_sampling_distribution(np.bincount(np.concatenate(sequences), minlength=N_ITEMS + 1))
    losses, hits1, hits10 = cyclic_fit(model, sequences, N_ITEMS, epochs=40)
    assert losses[-1] < 0.2 * losses[0], losses
    assert hits10 >= 0.98 and hits1 >= 0.9, (hits10, hits1)


def test_a_bad_loss_or_negative_count_is_refused() -> None:
    with pytest.raises(ConfigError, match="loss must be one of 'full-ce', 'sampled-ce'"):
        SASRecConfig(n_items=N_ITEMS, loss="bpr")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="n_negatives"):
        SASRecConfig(n_items=N_ITEMS, loss="sampled-ce", n_negatives=0)


def test_sampled_ce_draws_by_popularity_and_corrects_every_logit() -> None:
    torch.manual_seed(0)
    model = SASRec(SASRecConfig(n_items=4, max_len=4, loss="sampled-ce", n_negatives=20_000))
    torch.testing.assert_close(model.log_q[1:].exp(), torch.full((4,), 0.25))  # uniform until told otherwise
    model.set_sampling_distribution(np.array([7, 1, 0, 3, 6]))  # padding's count is ignored, item 2 counts as 1
    q = torch.tensor([1, 1, 3, 6]) / 11
    torch.testing.assert_close(model.log_q[1:], q.log())
    assert model.log_q[0] == -float("inf")
    h, pos = torch.randn(3, 64), torch.tensor([1, 2, 4])
    torch.manual_seed(1)
    neg = torch.multinomial(model.log_q.exp(), 20_000, replacement=True)  # the draw the loss is about to make
    torch.manual_seed(1)
    logits, loss = model.sampled_cross_entropy(h, pos)
    assert logits.shape == (3, 1 + 20_000) and loss is not None and torch.isfinite(loss)
    np.testing.assert_allclose(np.bincount(neg.numpy(), minlength=5)[1:] / 20_000, q.numpy(), atol=0.015)
    w, log_q = model.item_emb.weight, q.log()
    torch.testing.assert_close(logits[:, 0], (h * w[pos]).sum(-1) - log_q[pos - 1])
    own = neg[None, :] == pos[:, None]  # a negative that is the row's own target is masked out
    want = (h @ w[neg].T - log_q[neg - 1]).masked_fill(own, float("-inf"))
    torch.testing.assert_close(logits[:, 1:], want)
    assert torch.isneginf(logits[:, 1:]).sum() == own.sum() > 0
    with pytest.raises(ValueError, match="counts"):
        model.set_sampling_distribution(np.ones(3))


def test_the_sampling_distribution_stays_out_of_the_exported_graph(tmp_path: Path) -> None:
    model = SASRec(SASRecConfig(n_items=N_ITEMS, max_len=6, loss="sampled-ce"))
    model.set_sampling_distribution(np.arange(N_ITEMS + 1))
    graph = onnx.load(str(export_onnx(model, tmp_path / "model.onnx", max_len=6))).graph
    assert "log_q" in model.state_dict()
    assert not any("log_q" in init.name for init in graph.initializer)
    assert not any(init.dims == [N_ITEMS + 1] for init in graph.initializer)



# ---------------------------------------------------------------- on the real ML-100K


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory: pytest.TempPathFactory) -> MovieLens:
    return load("ml-100k", Path(tmp_path_factory.mktemp("data")))


@pytest.mark.integration
def test_sasrec_beats_popularity_on_ml_100k_leave_one_out(ml100k: MovieLens) -> None:
    parts = split(ml100k, LeaveOneOut())
    config = SASRecConfig(n_items=parts.train.n_items, max_len=50)
    seed_everything(0)  # the initial weights: the loop seeds only what follows
    model = SASRec(config)
    result = train(model, sequence_examples(parts.train.sequences, config.max_len), parts.validation,
                   TrainConfig(budget_s=60, batch_size=32, patience=10, progress=False))  # more steps per minute
    assert result.history[-1].seconds < 100
    scorer = TorchSequenceRecommender.from_module(model, config.n_items, config.max_len, name="sasrec")
    sasrec = evaluate(scorer, parts.test, cutoffs=(10,), progress=False)
    pop = evaluate(MostPopular().fit(parts.train), parts.test, cutoffs=(10,), progress=False)
    assert sasrec["NDCG@10"] > 1.1 * pop["NDCG@10"], (sasrec, pop, result.best_epoch, len(result.history))
