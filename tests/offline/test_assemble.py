"""The pipeline assembled on ml-100k from real generators: it learns, it round-trips through the registry."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from streamrec import registry as reg
from streamrec.data.base import MovieLens
from streamrec.data.movielens import load
from streamrec.errors import ConfigError
from streamrec.eval import LeaveOneOut, split
from streamrec.eval.evaluate import evaluate, fit_and_evaluate
from streamrec.eval.factory import create
from streamrec.eval.protocols import Split
from streamrec.export import load_ranker, publish
from streamrec.models.recommend import item_counts
from streamrec.models.sasrec import SASRec, SASRecConfig
from streamrec.offline.assemble import PipelineSpec, TwoStage, fit_generators, load_pipeline, publish_ranker
from streamrec.offline.ranker_fit import RankerConfig
from streamrec.rank.pipeline import Pipeline, Query
from tests.rank.helpers import assert_same_ranking, scored

SOURCES = ("itemknn", "vsknn", "mf", "content", "pop")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> MovieLens:
    return load("ml-100k", tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def parts(dataset: MovieLens) -> Split:
    return split(dataset, LeaveOneOut())


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


@pytest.fixture(scope="module")
def released(parts: Split, fitted: TwoStage, dataset: MovieLens, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fitted pipeline published once (its generators then carry their versions: a second publish
    elsewhere would name versions that registry does not hold); the ranker's version directory."""
    assert fitted.ranker_fit is not None
    return publish_ranker(fitted.ranker_fit, fitted._fitted(), parts, vocab=dataset.vocab, dataset="ml-100k",
                          metrics={}, registry=tmp_path_factory.mktemp("registry"))


def test_the_published_release_serves_exactly_what_was_fitted(parts: Split, fitted: TwoStage,
                                                              released: Path) -> None:
    """Every generator comes back from its arrays scoring bit for bit as fitted, and the served pipeline
    gives the same top-k with the same scores as the in-process one running the same (ONNX) ranker."""
    pipeline = fitted._fitted()
    version_dir, tmp_path = released, released.parent.parent
    manifest = reg.read_manifest(version_dir)
    assert set(manifest["pipeline"]["generator_versions"]) == set(SOURCES)
    served = load_pipeline(parts, tmp_path)
    histories = parts.test.histories[:64]
    for name in SOURCES:
        assert reg.read_manifest(reg.version_dir(tmp_path, name, manifest["pipeline"]["generator_versions"][name]))[
            "kind"] == "generator"
        expected = pipeline.generators[name].score(histories)
        assert np.array_equal(served.generators[name].score(histories), expected, equal_nan=True), name
    in_process = Pipeline(pipeline.generators, pipeline.table, pipeline.n_per_source, load_ranker(version_dir).score)
    assert np.array_equal(served.score(histories), in_process.score(histories))
    for history in histories[:10]:
        assert served.recommend(history, k=10) == in_process.recommend(history, k=10)
    # as a server runs it (folded DeepFM, batched): the same items in the same order, the same scores
    folded = load_pipeline(parts, tmp_path, fold=True)
    alone = [in_process.recommend(history, k=10) for history in histories]
    batched = folded.recommend_many([Query(history, 10) for history in histories])  # rows past one _CHUNK_ROWS
    for want, got in zip(alone, batched, strict=True):
        assert_same_ranking(scored(got), scored(want))
        sources = {r.item: r.sources for r in want}
        assert all(sources.get(r.item, r.sources) == r.sources for r in got)
    # and against the torch ranker it was trained as: the same order, logits within float error
    expected, got = pipeline.score(histories), served.score(histories)
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-4, atol=1e-4)


def test_a_neural_source_trained_on_another_split_is_refused(parts: Split, tmp_path: Path) -> None:
    config = SASRecConfig(n_items=parts.train.n_items, max_len=8)
    torch.manual_seed(0)
    vocab = ["<pad>", *(str(i) for i in range(1, config.n_items + 1))]
    publish(SASRec(config), config, name="sasrec", vocab=vocab, dataset="ml-100k",
            protocol={"description": "some other split"}, metrics={}, registry=tmp_path)
    with pytest.raises(ConfigError, match="trained on another split"):
        fit_generators(["sasrec"], parts, tmp_path, progress=False)


def test_bench_times_the_served_pipeline_per_batch_and_stage(released: Path) -> None:
    from streamrec.bench.models import ModelBenchConfig, bench_current_pipeline, format_rows

    rows = bench_current_pipeline(released.parent.parent, ModelBenchConfig(batch_sizes=(1, 4), runs=3, warmup=1, seq_len=20))
    stages = [*SOURCES, "candidates", "features", "ranker", "rest"]
    assert [(r["model"], r["batch"]) for r in rows] == [
        (name, b) for b in (1, 4) for name in ["pipeline", *(f"pipeline/{s}" for s in stages)]]
    whole = [r for r in rows if r["model"] == "pipeline"]
    assert all(float(r["cpu_ms_per_seq"]) > 0 and float(r["p99_ms"]) >= float(r["p50_ms"]) > 0 for r in whole)
    assert "pipeline/ranker" in format_rows(rows)
