"""The pipeline assembled on ml-100k from real generators: it learns, it round-trips through the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec.data.movielens import load
from streamrec.errors import ConfigError
from streamrec.eval import LeaveOneOut, split
from streamrec.eval.evaluate import evaluate, fit_and_evaluate
from streamrec.eval.factory import create
from streamrec.eval.protocols import Split
from streamrec.export import publish
from streamrec.models.recommend import item_counts
from streamrec.models.sasrec import SASRec, SASRecConfig
from streamrec.offline.assemble import PipelineSpec, TwoStage, fit_generators, load_pipeline, publish_ranker
from streamrec.offline.ranker_fit import RankerConfig

SOURCES = ("itemknn", "mf", "pop")


@pytest.fixture(scope="module")
def parts(tmp_path_factory: pytest.TempPathFactory) -> Split:
    return split(load("ml-100k", tmp_path_factory.mktemp("data")), LeaveOneOut())


@pytest.fixture(scope="module")
def fitted(parts: Split) -> TwoStage:
    spec = PipelineSpec(sources=SOURCES, n_per_source=50, ranker=RankerConfig(epochs=6, patience=3))
    return TwoStage(spec).fit_split(parts)


def test_the_pipeline_learns_on_held_out_users(parts: Split, fitted: TwoStage) -> None:
    counts = item_counts(parts.train)
    ours = evaluate(fitted, parts.test, train_counts=counts, progress=False)
    members = {s: evaluate(g, parts.test, progress=False) for s, g in fitted._fitted().generators.items()}
    best = max(m["NDCG@10"] for m in members.values())
    assert ours["NDCG@10"] > 2 * members["pop"]["NDCG@10"], (ours, members)
    assert ours["NDCG@10"] > 0.9 * best, (ours["NDCG@10"], best)
    assert fitted.ranker_fit is not None and fitted.ranker_fit.history[-1]["loss"] < fitted.ranker_fit.history[0]["loss"]


def test_evaluate_fits_it_on_the_split_and_only_on_test(parts: Split) -> None:
    model = create("pipeline")
    assert isinstance(model, TwoStage)
    with pytest.raises(ValueError, match="only be evaluated on test"):
        fit_and_evaluate(model, parts, part="validation")
    with pytest.raises(ConfigError, match="fit_split"):
        model.fit(parts.train)


def test_published_pipeline_scores_like_the_trained_one(parts: Split, fitted: TwoStage, tmp_path: Path) -> None:
    pipeline = fitted._fitted()
    assert fitted.ranker_fit is not None
    publish_ranker(fitted.ranker_fit, pipeline, parts, dataset="ml-100k", metrics={}, registry=tmp_path)
    served = load_pipeline(parts, tmp_path)
    histories = parts.test.histories[:64]
    expected, got = pipeline.score(histories), served.score(histories)
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-4, atol=1e-4)
    first = served.recommend(histories[0], k=10)
    assert [r.item for r in first] == [r.item for r in pipeline.recommend(histories[0], k=10)]


def test_a_neural_source_trained_on_another_split_is_refused(parts: Split, tmp_path: Path) -> None:
    config = SASRecConfig(n_items=parts.train.n_items, max_len=8)
    torch.manual_seed(0)
    vocab = ["<pad>", *(str(i) for i in range(1, config.n_items + 1))]
    publish(SASRec(config), config, name="sasrec", vocab=vocab, dataset="ml-100k",
            protocol={"description": "some other split"}, metrics={}, registry=tmp_path)
    with pytest.raises(ConfigError, match="trained on another split"):
        fit_generators(["sasrec"], parts, tmp_path, progress=False)
