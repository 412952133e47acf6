from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from streamrec.bench.models import ModelBenchConfig, bench_models
from streamrec.cli import main
from streamrec.errors import ArtifactError, ConfigError
from streamrec.export import (
    export_onnx,
    load_onnx,
    load_ranker,
    publish,
    publish_generator,
    ranker_graph,
    session_graph,
)
from streamrec.export.onnx_load import INDEX_FILE, OnnxSessionRecommender
from streamrec.models.base import top_k
from streamrec.models.deepfm import DeepFM, DeepFMConfig
from streamrec.models.popularity import MostPopular
from streamrec.models.recommend import clean_histories
from streamrec.models.sasrec import SASRec, SASRecConfig
from streamrec.offline.train_job import TrainJob
from streamrec.rank.features import ItemTable
from streamrec.rank.pipeline import Pipeline, Query
from streamrec.registry import current_version, read_history, resolve, sha256_of
from streamrec.retrieval.source import Retrieved
from streamrec.train import TorchSequenceRecommender, TrainConfig, seed_everything, sequence_examples, train
from tests.models.helpers import MakeData, tiny_items
from tests.rank.helpers import assert_same_ranking, scored

N_ITEMS = 60
MAX_LEN = 12
VOCAB = ["<pad>", *(f"m{i}" for i in range(1, N_ITEMS + 1))]


@pytest.fixture(scope="module")
def trained() -> tuple[SASRec, SASRecConfig]:
    """A briefly trained model, so its scores are peaked like a real one's rather than near-uniform."""
    rng = np.random.default_rng(0)
    seqs = [((s + np.arange(20)) % N_ITEMS + 1) for s in rng.integers(0, N_ITEMS, size=64)]
    config = SASRecConfig(n_items=N_ITEMS, max_len=MAX_LEN, d_model=32)
    seed_everything(0)
    model = SASRec(config)
    train(model, sequence_examples(seqs, MAX_LEN), None, TrainConfig(epochs=5, batch_size=16, progress=False))
    return model, config


def publish_to(root: Path, model: SASRec, config: SASRecConfig) -> Path:
    return publish(model, config, name="sasrec", vocab=VOCAB, dataset="synthetic", protocol={"protocol": "loo"},
                   metrics={"test": {"NDCG@10": 0.5}}, registry=root)


def histories(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    random = [rng.integers(1, N_ITEMS + 1, size=n) for n in (1, 3, MAX_LEN, 30)]  # 30: longer than max_len
    real_looking = [((s + np.arange(n)) % N_ITEMS + 1) for s, n in zip(rng.integers(0, N_ITEMS, 4), (2, 5, 9, 12))]
    return [*random, *real_looking, np.array([], dtype=np.int64), np.array([0, 7, 999, 8])]


def test_onnx_scores_match_torch(tmp_path: Path, trained: tuple[SASRec, SASRecConfig]) -> None:
    model, config = trained
    version_dir = publish_to(tmp_path, model, config)
    served = load_onnx(version_dir)
    reference = TorchSequenceRecommender.from_module(model, N_ITEMS, MAX_LEN)
    for seed in range(3):
        hist = histories(seed)
        ours, theirs = served.score(hist), reference.score(hist)
        assert np.isneginf(ours[:, 0]).all()
        np.testing.assert_allclose(ours[:, 1:], theirs[:, 1:], atol=1e-4, rtol=0)
        np.testing.assert_array_equal(top_k(ours, 10)[0], top_k(theirs, 10)[0])
    one = served.score([np.array([1, 2, 3])])  # a batch of one, a sequence shorter than the traced one
    np.testing.assert_allclose(one, reference.score([np.array([1, 2, 3])]), atol=1e-4)


def test_the_manifest_describes_the_artifact(tmp_path: Path, trained: tuple[SASRec, SASRecConfig]) -> None:
    version_dir = publish_to(tmp_path, *trained)
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["sha256"] == sha256_of(version_dir / "model.onnx")
    assert manifest["config"]["n_items"] == N_ITEMS and manifest["config"]["max_len"] == MAX_LEN
    assert manifest["dataset"] == "synthetic" and manifest["metrics"]["test"]["NDCG@10"] == 0.5
    assert manifest["created_at"].endswith("+00:00") and manifest["torch_version"] and manifest["onnx_version"]
    assert manifest["kind"] == "sequence" and manifest["output"] == {"name": "scores", "dtype": "float32",
                                                                     "shape": ["batch", N_ITEMS + 1]}
    assert manifest["inputs"] == [manifest["input"]] and manifest["input"] == {
        "name": "seq", "dtype": "int64", "shape": ["batch", "seq_len"], "padding": "left, 0", "max_len": MAX_LEN}
    assert json.loads((version_dir / "vocab.json").read_text()) == VOCAB
    assert load_onnx(tmp_path / "sasrec").vocab == VOCAB


def test_a_sha256_mismatch_is_refused(tmp_path: Path, trained: tuple[SASRec, SASRecConfig]) -> None:
    version_dir = publish_to(tmp_path, *trained)
    with open(version_dir / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ArtifactError, match="sha256"):
        load_onnx(version_dir)


def test_current_points_at_the_latest_version(tmp_path: Path, trained: tuple[SASRec, SASRecConfig]) -> None:
    first = publish_to(tmp_path, *trained)
    second = publish_to(tmp_path, *trained)
    model_dir = tmp_path / "sasrec"
    assert first != second and current_version(model_dir) == second.name
    assert resolve(model_dir) == second and resolve(first / "model.onnx") == first
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(["CURRENT", "HISTORY", first.name, second.name])
    assert [(h["version"], h["previous"], h["why"]) for h in read_history(tmp_path, "sasrec")] == [
        (first.name, None, "published"), (second.name, first.name, "published")]  # and no temp files
    with pytest.raises(ArtifactError, match="CURRENT"):
        current_version(tmp_path)
    for vocab in (VOCAB[:3], None):
        with pytest.raises(ArtifactError, match="vocab"):
            publish(trained[0], trained[1], name="x", vocab=vocab, dataset="d", protocol={}, metrics={},
                    registry=tmp_path)


def test_export_onnx_keeps_its_sequence_form(tmp_path: Path, trained: tuple[SASRec, SASRecConfig]) -> None:
    graph = onnx.load(str(export_onnx(trained[0], tmp_path / "m.onnx", max_len=MAX_LEN))).graph
    dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
    assert [i.name for i in graph.input] == ["seq"] and dims == ["batch", "seq_len"]
    with pytest.raises(ValueError, match="max_len"):
        export_onnx(trained[0], tmp_path / "n.onnx")


def test_a_ranker_shares_the_registry(tmp_path: Path, trained: tuple[SASRec, SASRecConfig]) -> None:
    """Published with ``ranker_graph``: its own manifest description, its own loader, and each
    loader refuses the other kind with a message that names the right one."""
    config = DeepFMConfig(sparse_sizes=(N_ITEMS + 1, 7), n_multi=5, n_dense=3, d_embed=4, hidden=(8,),
                          dense_mean=(1.0, 2.0, 3.0), dense_std=(1.0, 0.5, 2.0))
    torch.manual_seed(0)
    ranker = DeepFM(config)
    version_dir = publish(ranker, config, graph=ranker_graph(config), name="deepfm", vocab=VOCAB, dataset="synthetic",
                          protocol={}, metrics={"test": {"NDCG@10": 0.4}}, registry=tmp_path)
    sasrec_dir = publish_to(tmp_path, *trained)
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["kind"] == "ranker" and manifest["model_class"] == "DeepFM" and "input" not in manifest
    assert [(i["name"], i["dtype"], i["shape"]) for i in manifest["inputs"]] == [
        ("sparse", "int64", ["N", 2]), ("multi", "float32", ["N", 5]), ("dense", "float32", ["N", 3])]
    assert manifest["output"] == {"name": "logits", "dtype": "float32", "shape": ["N"]}
    assert DeepFMConfig(**manifest["config"]) == config  # the dense statistics travel with it
    served = load_ranker(tmp_path / "deepfm")
    assert served.vocab == VOCAB and served.manifest["version"] == version_dir.name
    scores = served.score(np.array([[1, 0], [N_ITEMS, 6]]), np.eye(2, 5), np.ones((2, 3)))  # casts the dtypes
    assert scores.shape == (2,) and scores.dtype == np.float32
    with pytest.raises(ArtifactError, match="load_ranker"):
        load_onnx(version_dir)
    with pytest.raises(ArtifactError, match="load_onnx"):
        load_ranker(sasrec_dir)


def test_bench_models_times_every_current_model(tmp_path: Path, trained: tuple[SASRec, SASRecConfig],
                                                capsys: pytest.CaptureFixture[str], make_data: MakeData) -> None:
    publish_to(tmp_path, *trained)
    pop = MostPopular().fit(make_data([[1, 2, 3], [2, 3, 4]], n_items=N_ITEMS))
    publish_generator(pop, vocab=VOCAB, dataset="ml-100k", protocol={}, registry=tmp_path)  # arrays, not ONNX
    rows = bench_models(tmp_path, ModelBenchConfig(runs=5, warmup=1, seq_len=MAX_LEN))
    assert [(r["model"], r["batch"], r["seq_len"]) for r in rows] == [
        ("pop", 1, MAX_LEN), ("pop", 32, MAX_LEN), ("sasrec", 1, MAX_LEN), ("sasrec", 32, MAX_LEN)]
    assert all(0 < float(r["p50_ms"]) <= float(r["p99_ms"]) for r in rows)  # type: ignore[arg-type]
    cold = bench_models(tmp_path, ModelBenchConfig(runs=2, warmup=1, seq_len=MAX_LEN, batch_sizes=(1,), cold=True))
    assert [(r["model"], r["cold"]) for r in cold] == [("pop", True), ("sasrec", True)]
    out = tmp_path / "bench.json"
    assert main(["bench", "models", "--registry", str(tmp_path), "--runs", "3", "--warmup", "1",
                 "--json", str(out)]) == 0
    assert "p99 ms" in capsys.readouterr().out and len(json.loads(out.read_text())) == 4
    assert main(["bench", "models", "--registry", str(tmp_path / "empty")]) == 2


@pytest.mark.integration
def test_the_train_command_reports_test_metrics_and_publishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(tmp_path / "data"))
    registry = tmp_path / "models"
    assert main(["train", "--models", "sasrec", "--dataset", "ml-100k", "--protocol", "session", "--epochs", "2",
                 "--max-len", "20", "--registry", str(registry), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "sasrec test on ML-100K, protocol B" in printed and "NDCG@10" in printed and "HR@10" in printed
    version_dir = resolve(registry / "sasrec")
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["protocol"]["protocol"] == "session" and manifest["training"]["epochs_run"] == 2
    assert set(manifest["metrics"]) == {"validation", "test"} and (version_dir / "curves.png").is_file()
    assert len(manifest["training"]["history"]) == 2
    assert main(["train", "--models", "sasrec,nope"]) == 2


def test_the_session_contract_publishes_the_item_table_and_its_index(
        tmp_path: Path, trained: tuple[SASRec, SASRecConfig]) -> None:
    model, config = trained
    version_dir = publish(model, config, name="sasrec", vocab=VOCAB, dataset="synthetic",
                          protocol={"protocol": "loo"}, metrics={}, registry=tmp_path, graph=session_graph(MAX_LEN))
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert manifest["contract"] == "session" and manifest["output"]["shape"] == ["batch", config.d_model]
    assert manifest["index"]["file"] == INDEX_FILE and manifest["index"]["n"] == N_ITEMS
    served = load_onnx(version_dir)
    assert isinstance(served, OnnxSessionRecommender)
    reference = TorchSequenceRecommender.from_module(model, N_ITEMS, MAX_LEN)
    hist = histories(0)
    np.testing.assert_allclose(served.score(hist), reference.score(hist), rtol=1e-4, atol=1e-5)
    # through the index: the same top-10 as the full scores (every list scanned at this size)
    seen = clean_histories(hist, N_ITEMS)
    items, _ = served.retrieve(hist).top(10, seen)
    want, _ = top_k(reference.score(hist), 10, seen)
    assert (items == want).mean() > 0.95
    (version_dir / INDEX_FILE).write_bytes((version_dir / INDEX_FILE).read_bytes()[:-8])  # a damaged index
    with pytest.raises(ArtifactError, match="not the one recorded"):
        load_onnx(version_dir)


def test_only_models_with_a_session_vector_take_the_session_contract() -> None:
    TrainJob(models=("sasrec", "gru4rec", "bert4rec"), data_dir=Path("data"), contract="session")
    with pytest.raises(ConfigError, match="neumf cannot be published with the session contract"):
        TrainJob(models=("sasrec", "neumf"), data_dir=Path("data"), contract="session")


def test_the_pipeline_through_the_index_serves_what_the_full_scores_serve(
        tmp_path: Path, trained: tuple[SASRec, SASRecConfig], make_data: MakeData) -> None:
    model, config = trained
    served = load_onnx(publish(model, config, name="sasrec", vocab=VOCAB, dataset="synthetic",
                               protocol={"protocol": "loo"}, metrics={}, registry=tmp_path, graph=session_graph(MAX_LEN)))
    data = make_data([[(s + j) % N_ITEMS + 1 for j in range(8)] for s in range(0, N_ITEMS, 3)], n_items=N_ITEMS,
                     items=tiny_items(N_ITEMS))
    generators = {"sasrec": served, "pop": MostPopular().fit(data)}
    table, n = ItemTable.build(data), {"sasrec": 20, "pop": 10}
    queries = [Query(h, 10) for h in histories(1)]
    full = Pipeline(generators, table, n, retrieve_above=N_ITEMS)  # at or below the threshold: full scores
    through = Pipeline(generators, table, n, retrieve_above=0)
    assert isinstance(full.source_scores([queries[0].history])["sasrec"], np.ndarray)
    assert isinstance(through.source_scores([queries[0].history])["sasrec"], Retrieved)
    for want, got in zip(full.recommend_many(queries), through.recommend_many(queries), strict=True):
        assert_same_ranking(scored(got), scored(want), tol=1e-4)


def test_the_top_k_of_the_session_graph_is_the_top_k_of_the_scores_graph(
        tmp_path: Path, trained: tuple[SASRec, SASRecConfig]) -> None:
    model, config = trained
    scores_graph = load_onnx(publish_to(tmp_path / "scores", model, config))
    session_graph_ = load_onnx(publish(model, config, name="sasrec", vocab=VOCAB, dataset="synthetic",
                                       protocol={"protocol": "loo"}, metrics={}, registry=tmp_path / "session",
                                       graph=session_graph(MAX_LEN)))
    assert type(scores_graph) is not type(session_graph_)
    for seed in range(3):
        hist = histories(seed)
        seen = clean_histories(hist, N_ITEMS)
        want, _ = top_k(scores_graph.score(hist), 10, seen)
        got, _ = top_k(session_graph_.score(hist), 10, seen)  # session @ items.T, in numpy
        np.testing.assert_array_equal(got, want)
