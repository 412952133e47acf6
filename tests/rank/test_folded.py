"""The folded DeepFM computes the published graph's logits, and is only used when it does."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec.export import load_ranker, publish, ranker_graph
from streamrec.models.deepfm import DeepFM
from streamrec.rank.folded import FoldedDeepFM, fold_ranker
from tests.models.helpers import config, random_features


@pytest.fixture(scope="module")
def model() -> DeepFM:
    torch.manual_seed(0)
    c = config(dense_mean=tuple(np.linspace(-3, 3, 30)), dense_std=tuple(np.linspace(0.5, 4, 30)), hidden=(32, 16, 8))
    m = DeepFM(c)
    with torch.no_grad():  # a trained model's scale, so logits spread over a few units
        for p in (m.sparse_emb.weight, m.sparse_w.weight, m.multi_emb, m.multi_w, m.dense_emb):
            p.normal_(std=0.15)
    return m.eval()


def weights_of(m: DeepFM) -> dict[str, np.ndarray]:
    out = {k: v.numpy() for k, v in m.state_dict().items()}
    out["dnn.out.weight"] = m.dnn[-1].weight.detach().numpy()
    return out


def test_folded_logits_equal_the_models(model: DeepFM) -> None:
    folded = FoldedDeepFM.from_weights(weights_of(model), dataclasses.asdict(model.config))
    for n, seed in ((300, 0), (1, 1), (2500, 2)):  # 2500: several passes of _CHUNK_ROWS, the last one short
        x = random_features(n, model.config, seed)
        with torch.no_grad():
            want = model.score(*x).numpy()
        got = folded(*(t.numpy() for t in x))
        assert got.dtype == np.float32 and got.shape == (n,) and (n == 1 or want.std() > 0.5)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)  # logits of O(10): float32 rounding


def test_fold_ranker_folds_a_published_graph_and_keeps_onnx_when_it_cannot(tmp_path: Path, model: DeepFM,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    version = publish(model, model.config, graph=ranker_graph(model.config), name="deepfm", dataset="synthetic",
                      protocol={"protocol": "session"}, metrics={}, registry=tmp_path)
    served = load_ranker(version)
    assert isinstance(fold_ranker(served, version / "model.onnx"), FoldedDeepFM)
    served.manifest["config"]["hidden"] = [32, 16]  # a config that does not describe the graph
    with caplog.at_level(logging.WARNING, logger="streamrec.rank.folded"):
        assert fold_ranker(served, version / "model.onnx") == served.score
    assert "fold_skipped" in caplog.text
