"""The ``streamrec train`` job: builders, settings, and whole runs on ML-100K with a budget of seconds."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from streamrec.errors import ConfigError
from streamrec.models.gru4rec import GRU4RecConfig
from streamrec.offline.train_job import BUILDERS, Builder, TrainJob, padded_batches, parse_network, run_train_job
from streamrec.registry import current_version
from streamrec.train.gru4rec_fit import train_config

BUDGET_S = 3.0  # of training per model


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("data")


def test_every_builder_names_a_model_and_its_config() -> None:
    for name, builder in BUILDERS.items():
        model_class, config_class = builder.classes()
        config, settings = builder.configs(config_class, 30, 7, TrainJob(data_dir=Path()).loop_settings(name))
        assert (config.n_items, config.max_len) == (30, 7) and settings.lr > 0
        assert callable(getattr(model_class, "score", None)), name


def test_gru4rec_trains_with_the_shared_settings_and_its_own_defaults() -> None:
    job = TrainJob(models=("gru4rec",), data_dir=Path(), batch_size=32, lr=0.01, epochs=7, seed=3)
    builder = BUILDERS["gru4rec"]
    config, settings = builder.configs(GRU4RecConfig, 30, 50, job.loop_settings("gru4rec"))
    assert (settings.batch_size, settings.lr, settings.epochs, settings.seed) == (32, 0.01, 7, 3)
    network = {f.name for f in dataclasses.fields(config)}
    assert not network & {f.name for f in dataclasses.fields(settings)}  # the network's config holds no training
    defaults = TrainJob(models=("gru4rec",), data_dir=Path()).loop_settings("gru4rec")
    own = train_config()
    assert (defaults["batch_size"], defaults["lr"], own.optimizer) == (own.batch_size, own.lr, settings.optimizer)


def test_network_settings_are_typed_by_the_config_and_reach_the_config() -> None:
    network = parse_network(["gru4rec.training=padded", "gru4rec.hidden_size=128", "gru4rec.dropout_hidden=0.3",
                             "neumf.hidden=32,16", "gru4rec.constrained_embedding=false"])
    assert network == {"gru4rec": {"training": "padded", "hidden_size": 128, "dropout_hidden": 0.3,
                                   "constrained_embedding": False}, "neumf": {"hidden": (32, 16)}}
    config, _ = BUILDERS["gru4rec"].configs(GRU4RecConfig, 30, 50, TrainJob(data_dir=Path()).loop_settings("gru4rec"),
                                            network["gru4rec"])
    assert (config.training, config.hidden_size, config.constrained_embedding) == ("padded", 128, False)
    for bad, words in (("gru4rec.hidden_size=big", "not a valid int"), ("gru5rec.hidden_size=1", "MODEL.FIELD"),
                       ("gru4rec.width=3", "no settable field 'width'"), ("gru4rec.n_items=3", "no settable field"),
                       ("gru4rec.hidden_size", "MODEL.FIELD=VALUE")):
        with pytest.raises(ConfigError, match=words):
            parse_network([bad])
    with pytest.raises(ConfigError, match="does not train"):
        TrainJob(models=("sasrec",), data_dir=Path(), network={"gru4rec": {"hidden_size": 3}})
    with pytest.raises(ConfigError, match="training must be"):
        TrainJob(models=("gru4rec",), data_dir=Path(), network=parse_network(["gru4rec.training=sideways"]))


def test_bad_names_and_settings_fail_before_anything_is_loaded() -> None:
    with pytest.raises(ConfigError, match="sasrec, gru4rec, bert4rec"):
        TrainJob(models=("sasrec", "gru5rec"), data_dir=Path())
    with pytest.raises(ConfigError, match="distinct"):
        TrainJob(models=("sasrec", "sasrec"), data_dir=Path())
    with pytest.raises(ConfigError, match="patience"):
        TrainJob(models=("gru4rec",), data_dir=Path(), patience=0)
    with pytest.raises(ConfigError, match="max_len"):
        TrainJob(data_dir=Path(), max_len=0)
    missing = Builder("streamrec.models.not_written_yet", "Nope", "NopeConfig", padded_batches)
    with pytest.raises(ConfigError, match=r"streamrec\.models\.not_written_yet, which does not exist"):
        missing.classes()
    with pytest.raises(ConfigError, match="does not define Nope and NopeConfig"):
        Builder("streamrec.models.sasrec", "Nope", "NopeConfig", padded_batches).classes()


@pytest.mark.parametrize("protocol", ["session", "loo"])
def test_a_whole_job_trains_tests_publishes_and_plots(protocol: str, data_dir: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    said: list[str] = []
    job = TrainJob(models=("gru4rec", "sasrec"), dataset="ml-100k", protocol=protocol,  # type: ignore[arg-type]
                   data_dir=data_dir, registry=registry, max_len=20, budget_s=BUDGET_S, progress=False)
    result = run_train_job(job, say=said.append)

    assert [run.name for run in result.runs] == ["gru4rec", "sasrec"]
    assert any(line.startswith("training gru4rec on ML-100K") for line in said)
    for run in result.runs:
        assert run.version_dir is not None and run.curves == run.version_dir / "curves.png"
        assert current_version(registry / run.name) == run.version_dir.name
        assert run.curves.read_bytes()[:4] == b"\x89PNG"
        files = {p.name for p in run.version_dir.iterdir()}
        assert files >= {"model.onnx", "manifest.json", "vocab.json", "curves.png"}
        manifest = json.loads((run.version_dir / "manifest.json").read_text())
        training = manifest["training"]
        assert manifest["name"] == run.name and manifest["dataset"] == "ml-100k"
        assert manifest["config"]["max_len"] == 20 and manifest["train_config"]["budget_s"] == BUDGET_S
        # seconds of budget: GRU4Rec is inside its first epochs; a small SASRec may run out of patience first
        stops = ("budget",) if run.name == "gru4rec" else ("budget", "patience")
        assert training["stopped"] == run.result.stopped in stops
        assert training["epochs_run"] == len(training["history"]) == len(run.result.history) >= 1
        assert training["best_epoch"] == run.result.best_epoch >= 1
        assert all(h["steps"] >= 1 and "NDCG@10" in h["val"] for h in training["history"])
        assert manifest["metrics"]["validation"]["NDCG@10"] == run.result.best_metrics["NDCG@10"]
        assert manifest["metrics"]["test"]["HR@20"] == run.test["HR@20"]
        # the published ONNX model ranks as the torch model did
        assert run.onnx_test["NDCG@10"] == pytest.approx(run.test["NDCG@10"], abs=1e-3)
        assert run.onnx_test["HR@20"] == pytest.approx(run.test["HR@20"], abs=1e-3)


def test_without_publishing_only_the_curves_are_written(data_dir: Path, tmp_path: Path) -> None:
    job = TrainJob(models=("gru4rec",), dataset="ml-100k", protocol="session", data_dir=data_dir, publish=False,
                   registry=tmp_path / "registry", curves_dir=tmp_path / "curves", epochs=1, progress=False)
    (run,) = run_train_job(job).runs
    assert run.version_dir is None and not run.onnx_test and not (tmp_path / "registry").exists()
    assert run.curves == tmp_path / "curves" / "gru4rec-ml-100k-session-curves.png" and run.curves.is_file()
    assert run.result.stopped == "epochs" and run.config.max_len == 50  # GRU4Rec's own default length
