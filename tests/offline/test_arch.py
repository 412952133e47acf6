"""Choosing the ranker's network on ml-100k: a non-DeepFM ranker is published with its architecture and
served by its ONNX graph (only DeepFM folds), and ``train-ranker --arch all`` compares the four."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from streamrec import registry as reg
from streamrec.cli import main
from streamrec.data.movielens import load
from streamrec.eval import LeaveOneOut, split
from streamrec.eval.protocols import Split
from streamrec.export import load_ranker
from streamrec.offline.assemble import PipelineSpec, TwoStage, publish_ranker
from streamrec.rank.folded import FoldedDeepFM
from streamrec.rank.pipeline import Pipeline
from streamrec.rank.release import load_release
from streamrec.settings import Settings

SOURCES = ("itemknn", "pop")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """STREAMREC_DATA_DIR's cache when there is one (the raw files come from a pinned wheel either way)."""
    found = Settings.from_env().data_dir
    return found if (found / "cache" / "ml-100k").is_dir() else tmp_path_factory.mktemp("data")


@pytest.fixture(scope="module")
def parts(data_dir: Path) -> Split:
    return split(load("ml-100k", data_dir), LeaveOneOut())


def test_a_dcnv2_release_is_served_by_its_onnx_graph(parts: Split, data_dir: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    from streamrec.offline.ranker_fit import RankerConfig

    spec = PipelineSpec(sources=SOURCES, ranker=RankerConfig(arch="dcnv2", epochs=2, patience=2))
    fitted = TwoStage(spec).fit_split(parts)
    assert fitted.ranker_fit is not None and fitted.ranker_fit.arch == "dcnv2"
    version_dir = publish_ranker(fitted.ranker_fit, fitted._fitted(), parts, vocab=load("ml-100k", data_dir).vocab,
                                 dataset="ml-100k", metrics={}, registry=tmp_path)
    manifest = reg.read_manifest(version_dir)
    assert version_dir.parent.name == reg.RANKER  # the ranker's slot, whatever its network
    assert manifest["architecture"] == "dcnv2" and manifest["model_class"] == "DCNv2"

    with caplog.at_level(logging.INFO):
        release = load_release(tmp_path, version_dir.name, fold=True)
    assert release.pipeline.ranker == release.ranker.score  # the ONNX graph itself, not folded
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert "event=ranker_onnx architecture=dcnv2" in caplog.text

    pipeline = fitted._fitted()
    in_process = Pipeline(pipeline.generators, pipeline.table, pipeline.n_per_source, load_ranker(version_dir).score)
    histories = parts.test.histories[:64]
    assert np.array_equal(release.pipeline.score(histories), in_process.score(histories))
    for history in histories[:20]:
        assert release.pipeline.recommend(history, k=10) == in_process.recommend(history, k=10)
    # and the torch network it was trained as: the same logits within float error
    expected, got = pipeline.score(histories), release.pipeline.score(histories)
    finite = np.isfinite(expected)
    np.testing.assert_allclose(got[finite], expected[finite], rtol=1e-4, atol=1e-4)

    # a release from before the architectures has none recorded: it is DeepFM's, and folds as it did
    # (here the graph is DCN-v2's, so folding is tried, fails and falls back to ONNX with a warning)
    del manifest["architecture"]
    reg.write_manifest(version_dir, manifest)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        old = load_release(tmp_path, version_dir.name, fold=True)
    assert not isinstance(old.pipeline.ranker, FoldedDeepFM) and "event=fold_skipped" in caplog.text


def test_train_ranker_compares_every_architecture(data_dir: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(data_dir))
    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STREAMREC_REGISTRY", str(tmp_path / "reg"))
    report = tmp_path / "report.json"
    assert main(["train-ranker", "--dataset", "ml-100k", "--sources", ",".join(SOURCES), "--epochs", "2",
                 "--no-ablation", "--arch", "all", "--json", str(report), "-q"]) == 0
    out = capsys.readouterr().out
    figures = json.loads(report.read_text())
    table = figures["architectures"]
    assert list(table) == list(reg.RANKER_ARCHS)
    for arch, row in table.items():
        assert set(row) >= {"holdout_NDCG@10", "NDCG@10", "HR@10", "MRR@20", "Coverage@20", "parameters",
                            "train_seconds", "latency_p50_ms", "latency_p99_ms", "latency_of"}, arch
        assert row["parameters"] > 0 and row["train_seconds"] > 0 and 0 < row["latency_p50_ms"] <= row["latency_p99_ms"]
        assert 0 < row["holdout_NDCG@10"] <= 1 and 0 < row["NDCG@10"] <= 1, (arch, row)
        assert arch in out
    best = max(table, key=lambda a: table[a]["holdout_NDCG@10"])
    assert figures["architecture"] == best and figures["variants"]["pipeline"]["NDCG@10"] == table[best]["NDCG@10"]
    manifest = reg.current_manifest(tmp_path / "reg", reg.RANKER)
    assert manifest["architecture"] == best and list(manifest["architectures"]) == list(table)
    # the published release serves the pipeline that was evaluated, folded or not
    assert figures["served_release_test"]["NDCG@10"] == pytest.approx(table[best]["NDCG@10"], abs=1e-4)


def test_every_architecture_has_a_network() -> None:
    from streamrec.offline.ranker_fit import NETWORKS

    assert tuple(NETWORKS) == reg.RANKER_ARCHS


def test_publish_names_an_architecture_that_was_trained() -> None:
    with pytest.raises(SystemExit):
        main(["train-ranker", "--arch", "all", "--publish", "xgboost"])
    assert main(["train-ranker", "--dataset", "ml-100k", "--arch", "dcnv2", "--publish", "dlrm"]) == 2
