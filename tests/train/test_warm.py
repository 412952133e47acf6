from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec.errors import ConfigError
from streamrec.models.sasrec import SASRec, SASRecConfig
from streamrec.train.warm import load_weights, remap_state, save_weights, warm_start


def test_item_tables_are_reindexed_by_item_id_and_new_items_stay_fresh() -> None:
    old = {"emb": np.arange(4 * 2, dtype=np.float32).reshape(4, 2),  # pad, a, b, c
           "mask_emb": np.arange(5, dtype=np.float32)[:, None].repeat(2, 1),  # one row past the catalogue
           "shared": np.ones(3, dtype=np.float32), "resized": np.ones(7, dtype=np.float32)}
    fresh = {"emb": torch.full((4, 2), -1.0), "mask_emb": torch.full((5, 2), -1.0),
             "shared": torch.zeros(3), "resized": torch.zeros(9), "only_new": torch.zeros(2)}
    state, left = remap_state(old, ["<pad>", "a", "b", "c"], ["<pad>", "c", "new", "a"], fresh)
    assert state["emb"].tolist() == [[0, 1], [6, 7], [-1, -1], [2, 3]]  # pad, c, new (fresh), a
    assert state["mask_emb"][4].tolist() == [4, 4]  # the row past the catalogue stays last
    assert state["shared"].tolist() == [1, 1, 1]
    assert set(left) == {"resized", "only_new"}


def test_a_warm_started_model_scores_known_items_as_before(tmp_path: Path) -> None:
    torch.manual_seed(0)
    old_vocab = ["<pad>", *"abcdef"]
    old = SASRec(SASRecConfig(n_items=6, max_len=8)).eval()
    save_weights(old, tmp_path)
    (tmp_path / "vocab.json").write_text('["<pad>", "a", "b", "c", "d", "e", "f"]')
    new_vocab = ["<pad>", "f", "e", "d", "c", "b", "a", "g"]
    new = SASRec(SASRecConfig(n_items=7, max_len=8)).eval()
    warm_start(new, tmp_path, new_vocab)
    with torch.no_grad():
        before = old.score(torch.tensor([[0, 0, 1, 2]]))[0]  # a, b
        after = new.score(torch.tensor([[0, 0, 6, 5]]))[0]  # a, b in the new numbering
    by_id_before = {old_vocab[i]: float(before[i]) for i in range(1, 7)}
    by_id_after = {new_vocab[i]: float(after[i]) for i in range(1, 7)}
    assert by_id_after == pytest.approx(by_id_before, rel=1e-5)


def test_a_version_without_weights_cannot_seed_a_warm_start(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="weights.npz"):
        load_weights(tmp_path)
