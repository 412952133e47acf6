"""AutoRec: the encoder over the history's multi-hot vector, prefix training, ONNX parity, and ml-100k."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from streamrec.errors import ConfigError
from streamrec.models.autorec import AutoRec, AutoRecConfig
from streamrec.train import TrainConfig, seed_everything, sequence_examples, train
from tests.models.helpers import (
    N_ITEMS,
    HoldOut,
    assert_sequence_onnx_parity,
    cyclic_sequences,
    hit_rates_after_training,
)


def test_scores_are_the_decoded_hidden_layer_of_the_normalised_multi_hot_vector() -> None:
    torch.manual_seed(0)
    model = AutoRec(AutoRecConfig(n_items=N_ITEMS, max_len=8, hidden=6)).eval()
    seq = torch.tensor([[0, 0, 3, 1, 4]])
    multi_hot = torch.zeros(N_ITEMS + 1)
    multi_hot[[3, 1, 4]] = 1 / 3 ** 0.5
    want = model.decode(torch.sigmoid(multi_hot @ model.encode.weight + model.encode_bias))
    torch.testing.assert_close(model.score(seq)[0], want)
    torch.testing.assert_close(model.score(torch.tensor([[4, 1, 3]])), model.score(seq))


def test_training_predicts_the_item_after_each_prefix_and_drops_items_only_in_training() -> None:
    model = AutoRec(AutoRecConfig(n_items=N_ITEMS, max_len=4, item_dropout=0.0, dropout=0.0))
    seq, targets = torch.tensor([[0, 1, 2, 3], [0, 0, 0, 7]]), torch.tensor([[0, 2, 3, 4], [0, 0, 0, 8]])
    logits, loss = model(seq, targets)
    assert logits.shape == (4, N_ITEMS + 1) and loss is not None
    torch.testing.assert_close(loss, F.cross_entropy(logits, torch.tensor([2, 3, 4, 8])))
    torch.testing.assert_close(logits[1], model.score(torch.tensor([[1, 2]]))[0])
    noisy = AutoRec(AutoRecConfig(n_items=N_ITEMS, max_len=4, item_dropout=0.5, dropout=0.0))
    noisy.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    assert not torch.equal(noisy(seq, targets)[0], logits)  # items dropped from the inputs
    noisy.eval()
    torch.testing.assert_close(noisy(seq, targets)[0], logits)  # never at evaluation


def test_a_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="hidden"):
        AutoRecConfig(n_items=N_ITEMS, hidden=0)
    with pytest.raises(ConfigError, match="item_dropout"):
        AutoRecConfig(n_items=N_ITEMS, item_dropout=1.0)


def test_onnx_scores_match_torch(tmp_path: Path) -> None:
    config = AutoRecConfig(n_items=N_ITEMS, max_len=12, hidden=32)
    seed_everything(0)
    model = AutoRec(config)
    train(model, sequence_examples(cyclic_sequences(64, 20), config.max_len), None,
          TrainConfig(epochs=5, batch_size=16, lr=5e-3, progress=False))
    assert_sequence_onnx_parity(model, "autorec", tmp_path)


@pytest.mark.integration
def test_beats_popularity_on_ml100k(ml100k_holdout: HoldOut) -> None:
    # Seen: HR@10 0.138 against MostPopular's 0.086, in about 15 s
    config = AutoRecConfig(n_items=ml100k_holdout.train.n_items, max_len=50)
    seed_everything(0)
    hr, pop = hit_rates_after_training(AutoRec(config), sequence_examples(ml100k_holdout.train.sequences, config.max_len),
                                       ml100k_holdout, epochs=20, batch_size=128, lr=5e-3)
    assert hr > 1.2 * pop, (hr, pop)
