"""The folded DeepFM computes the published graph's logits, and is only used when it does."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec.export import load_ranker, publish, ranker_graph
from streamrec.models.deepfm import DeepFM, DeepFMConfig
from streamrec.rank import folded as folded_module
from streamrec.rank.candidates import union_top_n
from streamrec.rank.features import ItemTable, SessionContext, dense_names, pair_features, sparse_sizes
from streamrec.rank.folded import FoldedDeepFM, PerItemDeepFM, fold_ranker
from tests.models.helpers import MakeData, config, mixed_data, random_features


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


SOURCES = ("a", "b", "c")


@pytest.fixture
def table(make_data: MakeData) -> ItemTable:
    return ItemTable.build(mixed_data(make_data))


@pytest.fixture
def layout_model(table: ItemTable) -> DeepFM:
    """A DeepFM of the pipeline's own feature layout over ``table``, with a trained model's scale."""
    torch.manual_seed(1)
    D = len(dense_names(SOURCES))
    m = DeepFM(DeepFMConfig(sparse_sizes=sparse_sizes(table, len(SOURCES)), n_multi=table.genres.shape[1], n_dense=D,
                            dense_mean=tuple(np.linspace(-1, 2, D)), dense_std=tuple(np.linspace(0.5, 3, D)),
                            hidden=(32, 16)))
    with torch.no_grad():
        for p in (m.sparse_emb.weight, m.sparse_w.weight, m.multi_emb, m.multi_w, m.dense_emb):
            p.normal_(std=0.3)
    return m.eval()


def served_pairs(table: ItemTable, B: int, seed: int):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    scores = {s: rng.standard_normal((B, table.n_items + 1)).astype(np.float32) for s in SOURCES}
    histories = [rng.integers(1, table.n_items + 1, size=rng.integers(0, 7)) for _ in range(B)]
    contexts = [SessionContext(times=np.arange(len(h)) * 600.0, now=1e4, last_type=("click", None)[b % 2])
                for b, h in enumerate(histories)]
    cands = union_top_n(scores, {"a": 6, "b": 4, "c": 0}, histories)
    return cands, pair_features(cands, histories, table, contexts)


def test_per_item_logits_equal_the_models_on_the_full_features(table: ItemTable, layout_model: DeepFM,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The item-only rows summed once per item, and the session's once per session, give the logits the
    model gives the expanded features, over several passes (a short last one) and for empty sessions."""
    monkeypatch.setattr(folded_module, "_CHUNK_ROWS", 40)
    folded = FoldedDeepFM.from_weights(weights_of(layout_model), dataclasses.asdict(layout_model.config))
    per_item = PerItemDeepFM.build(folded, table)
    cands, pairs = served_pairs(table, B=13, seed=0)
    with torch.no_grad():
        want = layout_model.score(*(torch.from_numpy(a) for a in pairs.full(table).flat())).numpy()
    got = per_item.score_pairs(pairs)
    B, C = cands.items.shape
    assert got.shape == (B, C) and got.dtype == np.float32 and 40 // C < B
    mask = cands.mask
    assert want.reshape(B, C)[mask].std() > 0.5
    np.testing.assert_allclose(got[mask], want.reshape(B, C)[mask], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(per_item(*pairs.full(table).flat()), want, rtol=1e-5, atol=1e-4)  # the flat call


def test_fold_ranker_folds_per_item_with_a_table_that_fits(tmp_path: Path, table: ItemTable, layout_model: DeepFM,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    version = publish(layout_model, layout_model.config, graph=ranker_graph(layout_model.config), name="deepfm",
                      dataset="synthetic", protocol={"protocol": "session"}, metrics={}, registry=tmp_path)
    served = load_ranker(version)
    assert isinstance(fold_ranker(served, version / "model.onnx", table), PerItemDeepFM)
    other = dataclasses.replace(table, genres=table.genres[:, :-1], genre_names=table.genre_names[:-1])
    with caplog.at_level(logging.WARNING, logger="streamrec.rank.folded"):
        kept = fold_ranker(served, version / "model.onnx", other)  # one genre short of the model's
    assert isinstance(kept, FoldedDeepFM) and "per_item_skipped" in caplog.text
