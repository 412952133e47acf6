"""NeuMF: the folded-in towers, the sampled log loss, ONNX parity, and ml-100k."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from streamrec.errors import ConfigError
from streamrec.models.bag import pool
from streamrec.models.neumf import NeuMF, NeuMFConfig
from streamrec.train import TrainConfig, seed_everything, sequence_examples, train
from tests.models.helpers import (
    N_ITEMS,
    HoldOut,
    assert_sequence_onnx_parity,
    cyclic_sequences,
    hit_rates_after_training,
)


def test_scores_follow_the_papers_towers_on_the_folded_in_user() -> None:
    torch.manual_seed(0)
    model = NeuMF(NeuMFConfig(n_items=N_ITEMS, max_len=8, d_gmf=4, d_mlp=6, hidden=(5, 3))).eval()
    seq = torch.tensor([[0, 0, 3, 1, 4], [5, 2, 2, 6, 1]])
    scores = model.score(seq)
    assert scores.shape == (2, N_ITEMS + 1)
    for b in range(2):
        row = seq[b:b + 1]
        gmf_u, mlp_u = pool(model.gmf_user(row), row)[0], pool(model.mlp_user(row), row)[0]
        for item in (1, 7, N_ITEMS):
            gmf = gmf_u * model.gmf_item.weight[item]
            first = torch.cat([mlp_u, model.mlp_item.weight[item]]) @ torch.cat(
                [model.first_user.weight, model.first_item.weight], dim=1).T + model.first_user.bias
            mlp = model.tower(F.relu(first))
            want = model.out(torch.cat([gmf, mlp]))[0]
            torch.testing.assert_close(scores[b, item], want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(model.score(torch.tensor([[4, 3, 1]])), scores[:1])  # a bag: order and padding


def test_training_scores_each_prefix_against_sampled_negatives() -> None:
    torch.manual_seed(0)
    model = NeuMF(NeuMFConfig(n_items=N_ITEMS, max_len=4, n_negatives=3))
    seq, targets = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 7]]), torch.tensor([[0, 2, 3, 4], [0, 0, 0, 8]])
    logits, loss = model(seq, targets)
    assert logits.shape == (4, 4) and loss is not None
    labels = torch.zeros(4, 4)
    labels[:, 0] = 1
    torch.testing.assert_close(loss, F.binary_cross_entropy_with_logits(logits, labels))
    model.eval()
    with torch.no_grad():  # column 0 is the target scored from its prefix, as ``score`` scores it
        torch.testing.assert_close(logits[0, 0], model.score(torch.tensor([[1]]))[0, 2])
        torch.testing.assert_close(logits[3, 0], model.score(torch.tensor([[7]]))[0, 8])


def test_a_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="hidden"):
        NeuMFConfig(n_items=N_ITEMS, hidden=())
    with pytest.raises(ConfigError, match="n_negatives"):
        NeuMFConfig(n_items=N_ITEMS, n_negatives=0)
    with pytest.raises(ConfigError, match="dropout"):
        NeuMFConfig(n_items=N_ITEMS, dropout=1.0)


def test_onnx_scores_match_torch(tmp_path: Path) -> None:
    config = NeuMFConfig(n_items=N_ITEMS, max_len=12, d_gmf=8, d_mlp=8, hidden=(16, 8))
    seed_everything(0)
    model = NeuMF(config)
    train(model, sequence_examples(cyclic_sequences(64, 20), config.max_len), None,
          TrainConfig(epochs=5, batch_size=16, lr=5e-3, progress=False))
    assert_sequence_onnx_parity(model, "neumf", tmp_path)


@pytest.mark.integration
def test_beats_popularity_on_ml100k(ml100k_holdout: HoldOut) -> None:
    # 60 epochs of 8 steps (943 users, batch 128). Seen: HR@10 0.135 against MostPopular's 0.086, in about 10 s
    config = NeuMFConfig(n_items=ml100k_holdout.train.n_items, max_len=50)
    seed_everything(0)
    hr, pop = hit_rates_after_training(NeuMF(config), sequence_examples(ml100k_holdout.train.sequences, config.max_len),
                                       ml100k_holdout, epochs=60, batch_size=128, lr=5e-3)
    assert hr > 1.2 * pop, (hr, pop)
