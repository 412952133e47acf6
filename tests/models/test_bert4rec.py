"""BERT4Rec: masking, shapes, padding, overfitting, the registry, ONNX parity, and ml-100k."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from streamrec.errors import ConfigError
from streamrec.models.bert4rec import Bert4Rec, Bert4RecConfig
from streamrec.registry import read_manifest
from streamrec.train import TrainConfig, seed_everything, sequence_examples, train
from tests.models.helpers import (
    N_ITEMS,
    HoldOut,
    assert_sequence_onnx_parity,
    cyclic_fit,
    cyclic_sequences,
    hit_rates_after_training,
)


def test_score_has_a_column_per_item_plus_padding_and_never_the_mask() -> None:
    model = Bert4Rec(Bert4RecConfig(n_items=N_ITEMS, max_len=8)).eval()
    seq = torch.tensor([[0, 0, 0, 1, 2], [3, 4, 5, 6, 7]])
    assert model.item_emb.weight.shape[0] == N_ITEMS + 2 and model.mask_token == N_ITEMS + 1
    assert model.score(seq).shape == (2, N_ITEMS + 1)
    logits, loss = model(seq)
    assert logits.shape == (2, N_ITEMS + 1) and loss is None
    torch.testing.assert_close(logits, model.score(seq))


def test_training_masks_a_fifth_of_each_row_or_its_last_item() -> None:
    torch.manual_seed(0)
    model = Bert4Rec(Bert4RecConfig(n_items=N_ITEMS, max_len=30, mask_prob=0.2, last_only_prob=0.25))
    lengths = torch.randint(1, 31, (20_000,))
    window = torch.where(torch.arange(30) >= 30 - lengths[:, None], torch.randint(1, N_ITEMS + 1, (20_000, 30)), 0)
    masked = model.cloze_mask(window)
    assert not (masked & (window == 0)).any()  # never padding
    want = (lengths * 0.2).round().clamp(min=1)
    last_only = (masked.sum(1) == 1) & masked[:, -1] & (want > 1)
    assert ((masked.sum(1) == want) | last_only).all()
    assert 0.2 < last_only.float().mean() / (want > 1).float().mean() < 0.3
    # the random rows spread their masks over every position a row has, the first one included
    assert masked[~last_only & (lengths == 30)].float().mean(0).min() > 0.1
    torch.manual_seed(0)
    first = model.cloze_mask(window)
    torch.manual_seed(0)
    assert torch.equal(first, model.cloze_mask(window))  # torch's RNG: seed_everything makes it repeat


def test_training_predicts_the_masked_items_of_the_whole_window() -> None:
    torch.manual_seed(0)
    model = Bert4Rec(Bert4RecConfig(n_items=N_ITEMS, max_len=6, mask_prob=1.0, last_only_prob=0.0))
    seq = torch.tensor([[1, 2, 3, 4, 5, 6], [0, 0, 0, 0, 7, 8]])  # the inputs are the targets shifted by one
    targets = torch.tensor([[2, 3, 4, 5, 6, 7], [0, 0, 0, 7, 8, 9]])
    logits, loss = model(seq, targets)
    assert logits.shape == (7 + 3, N_ITEMS + 1) and loss is not None  # 7 items in a window of max_len + 1, 3
    labels = torch.tensor([1, 2, 3, 4, 5, 6, 7, 7, 8, 9])
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, labels))


def test_a_bad_config_is_refused() -> None:
    with pytest.raises(ConfigError, match="mask_prob"):
        Bert4RecConfig(n_items=N_ITEMS, mask_prob=0.0)
    with pytest.raises(ConfigError, match="last_only_prob"):
        Bert4RecConfig(n_items=N_ITEMS, last_only_prob=1.5)
    with pytest.raises(ConfigError, match="n_items"):
        Bert4RecConfig(n_items=0)


def test_bert4rec_overfits_a_tiny_cyclic_dataset() -> None:
    # more sequences and steps than SASRec's twin test: a masked item has no input of its own, so the
    # model must first learn to read its neighbours through attention; 64 sequences plateau at hits@1 ~0.5
    sequences = cyclic_sequences(256, 12)
    config = Bert4RecConfig(n_items=N_ITEMS, max_len=10, d_model=32, dropout=0.0)
    seed_everything(0)  # the initial weights: the loop seeds only what follows
    model = Bert4Rec(config)
    losses, hits1, hits10 = cyclic_fit(model, sequences, N_ITEMS, epochs=30)
    assert losses[-1] < 0.2 * losses[0], losses
    assert hits10 >= 0.98 and hits1 >= 0.9, (hits10, hits1)



# ---------------------------------------------------------------- ONNX

MAX_LEN = 12


@pytest.fixture(scope="module")
def trained() -> tuple[Bert4Rec, Bert4RecConfig]:
    """Briefly trained, so its scores are peaked like a real model's rather than near-uniform."""
    config = Bert4RecConfig(n_items=N_ITEMS, max_len=MAX_LEN, d_model=32)
    seed_everything(0)
    model = Bert4Rec(config)
    train(model, sequence_examples(cyclic_sequences(64, 20), MAX_LEN), None,
          TrainConfig(epochs=5, batch_size=16, progress=False))
    return model, config


def test_onnx_scores_match_torch(tmp_path: Path, trained: tuple[Bert4Rec, Bert4RecConfig]) -> None:
    model, _ = trained
    version = assert_sequence_onnx_parity(model, "bert4rec", tmp_path)
    assert read_manifest(version)["config"]["mask_prob"] == 0.2


# ---------------------------------------------------------------- ml-100k


@pytest.mark.integration
def test_beats_popularity_on_ml100k(ml100k_holdout: HoldOut) -> None:
    # max_len 50 rather than the default 200, and 8 epochs. Seen: HR@10 0.142 against MostPopular's 0.086, in 11 s
    config = Bert4RecConfig(n_items=ml100k_holdout.train.n_items, max_len=50)
    seed_everything(0)
    hr, pop = hit_rates_after_training(Bert4Rec(config), sequence_examples(ml100k_holdout.train.sequences, config.max_len),
                                       ml100k_holdout, epochs=8, batch_size=16, lr=2e-3)
    assert hr > 1.2 * pop, (hr, pop)
