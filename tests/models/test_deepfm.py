from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from streamrec.errors import ArtifactError
from streamrec.export import load_ranker, publish, ranker_graph
from streamrec.models.deepfm import DeepFM, DeepFMConfig, RankLoss, listwise_loss
from tests.models.helpers import (
    BAD_CONFIGS,
    LIST,
    N_VALUES,
    D,
    assert_onnx_parity,
    config,
    fit_cross,
    matching_lists,
)

# ---------------------------------------------------------------- shapes and configuration


@pytest.mark.parametrize(("change", "match"), BAD_CONFIGS)
def test_bad_configs_are_refused(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        config(**change)


def test_config_survives_a_json_round_trip() -> None:
    c = config(dense_mean=tuple(np.arange(D, dtype=np.float64)), dense_std=(2.0,) * D)
    again = DeepFMConfig(**{k: list(v) if isinstance(v, tuple) else v for k, v in c.__dict__.items()})
    assert again == c and isinstance(again.sparse_sizes, tuple) and type(again.dense_mean[1]) is float


def test_listwise_loss_leaves_out_lists_without_a_positive() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3 * 4, requires_grad=True)
    labels = torch.zeros(12)
    labels[[1, 10]] = 1.0  # lists 0 and 2 have a positive, list 1 has none
    loss = listwise_loss(logits, labels, 4)
    keep = torch.tensor([0, 1, 2, 3, 8, 9, 10, 11])
    torch.testing.assert_close(loss, listwise_loss(logits[keep], labels[keep], 4))
    loss.backward()
    assert logits.grad is not None and torch.all(logits.grad[4:8] == 0)
    none = listwise_loss(logits, torch.zeros(12), 4)  # no positive anywhere: 0, not NaN
    assert none.item() == 0.0 and none.requires_grad


# ---------------------------------------------------------------- it learns a feature cross

def test_synthetic_lists_have_exactly_one_positive() -> None:
    _, labels = matching_lists(200, seed=3)
    assert torch.all(labels.view(-1, LIST).sum(dim=1) == 1)


@pytest.mark.parametrize("loss", ["bce", "listwise"])
def test_it_learns_a_cross_of_two_fields(loss: RankLoss) -> None:
    torch.manual_seed(0)
    model = DeepFM(DeepFMConfig(sparse_sizes=(N_VALUES, N_VALUES, 5), n_multi=4, n_dense=2, d_embed=8,
                                hidden=(32,), dropout=0.0))
    accuracy, losses = fit_cross(model, loss)
    assert accuracy > 0.9, (accuracy, losses)
    assert losses[-1] < 0.5 * losses[0], losses


# ---------------------------------------------------------------- published and served by onnxruntime


@pytest.fixture(scope="module")
def ranker() -> DeepFM:
    torch.manual_seed(0)
    c = config(dense_mean=tuple(np.linspace(-3, 3, D)), dense_std=tuple(np.linspace(0.5, 4, D)))
    model = DeepFM(c)
    with torch.no_grad():  # embeddings of a trained model's scale, so scores spread over a few units
        for p in (model.sparse_emb.weight, model.sparse_w.weight, model.multi_emb, model.multi_w, model.dense_emb):
            p.normal_(std=0.15)
    return model


def publish_ranker(root: Path, model: DeepFM) -> Path:
    return publish(model, model.config, graph=ranker_graph(model.config), name="deepfm", dataset="synthetic",
                   protocol={"protocol": "session"}, metrics={"test": {"NDCG@10": 0.5}}, registry=root)


def test_onnx_scores_match_torch(tmp_path: Path, ranker: DeepFM) -> None:
    served = load_ranker(publish_ranker(tmp_path, ranker).parent)  # via CURRENT
    assert_onnx_parity(ranker, served)
    assert served.manifest["config"]["dense_std"][0] == 0.5 and served.vocab is None


def test_a_corrupted_ranker_is_refused(tmp_path: Path, ranker: DeepFM) -> None:
    version_dir = publish_ranker(tmp_path, ranker)
    with open(version_dir / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="sha256"):
        load_ranker(version_dir)

