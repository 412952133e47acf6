"""Retraining rounds on ML-100K clicks, without Kafka: a good round is promoted, a model trained on
shuffled labels is rejected and the old release keeps serving, and a warm start seeds from it."""

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from streamrec import registry as reg
from streamrec.data.movielens import load
from streamrec.retrain.gate import GateConfig
from streamrec.retrain.job import RetrainConfig, RetrainResult, run_retrain
from streamrec.retrain.releases import list_versions, release_of

TEST_DAYS = 14.0


@pytest.fixture(scope="module")
def clicks(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    data_dir = tmp_path_factory.mktemp("data")
    i = load("ml-100k", data_dir).interactions
    events = pd.DataFrame({"event_id": np.arange(len(i)).astype(str), "session_id": i.user_id, "user_id": i.user_id,
                           "item_id": i.item_id, "timestamp": i.timestamp.to_numpy(np.int64) * 1000})
    return events, data_dir


def config(registry: Path, data_dir: Path, **changes: object) -> RetrainConfig:
    settings = dict(archive=Path("unused"), registry=registry, data_dir=data_dir, catalog="ml-100k",
                    models=("sasrec",), sources=("sasrec", "itemknn", "pop"), budget_s=6.0, ranker_epochs=3,
                    test_days=TEST_DAYS, gate=GateConfig(tolerance=0.05))
    return RetrainConfig(**{**settings, **changes})  # type: ignore[arg-type]


def shuffled_before_test(events: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """The same log, with the item of every click before the held-out slice shuffled: labels that teach nothing."""
    cut = events["timestamp"].max() - int(2 * TEST_DAYS * 86400 * 1000)
    out = events.copy()
    early = out["timestamp"] < cut
    out.loc[early, "item_id"] = np.random.default_rng(seed).permutation(out.loc[early, "item_id"].to_numpy())
    return out


@pytest.fixture(scope="module")
def first_round(clicks: tuple[pd.DataFrame, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RetrainResult]:
    events, data_dir = clicks
    registry = tmp_path_factory.mktemp("registry")
    return registry, run_retrain(config(registry, data_dir), events=events.iloc[:80_000])


def test_a_first_round_is_promoted_and_beats_popularity(first_round: tuple[Path, RetrainResult]) -> None:
    registry, result = first_round
    assert result.promoted and release_of(registry) == result.release
    assert set(result.release) == {"sasrec", "itemknn", "pop", "deepfm"}  # every member of the release a version
    for name, version in result.release.items():
        assert reg.read_pointer(registry, name) == version
    pipeline = result.new["pipeline"]["NDCG@10"]
    manifest = json.loads((registry / "deepfm" / result.release["deepfm"] / "manifest.json").read_text())
    assert manifest["status"] == "promoted" and manifest["dataset"] == result.snapshot
    assert pipeline > 1.5 * manifest["metrics"]["members_test"]["pop"]["NDCG@10"]


def test_a_model_trained_on_shuffled_labels_is_rejected_and_the_old_release_stays(
        first_round: tuple[Path, RetrainResult], clicks: tuple[pd.DataFrame, Path]) -> None:
    registry, good = first_round
    events, data_dir = clicks
    bad = run_retrain(config(registry, data_dir), events=shuffled_before_test(events))
    assert not bad.promoted and "NDCG@10" in bad.decision.reason
    assert bad.new["pipeline"]["NDCG@10"] < bad.current["pipeline"]["NDCG@10"]
    assert release_of(registry) == good.release  # serving never moved
    rows = {(r.name, r.version): r for r in list_versions(registry)}
    for name, version in bad.release.items():
        assert rows[name, version].status == "rejected" and not rows[name, version].current


def test_a_warm_start_seeds_from_the_current_release(first_round: tuple[Path, RetrainResult],
                                                     clicks: tuple[pd.DataFrame, Path]) -> None:
    registry, _ = first_round
    events, data_dir = clicks
    current = release_of(registry)
    result = run_retrain(config(registry, data_dir, warm_start=True), events=events)
    manifest = json.loads((registry / "sasrec" / result.release["sasrec"] / "manifest.json").read_text())
    assert manifest["warm_start"] == str(registry / "sasrec" / current["sasrec"])


def test_a_current_release_that_cannot_be_loaded_rejects_the_new_one_unless_forced(
        first_round: tuple[Path, RetrainResult], clicks: tuple[pd.DataFrame, Path], tmp_path: Path) -> None:
    """The gate fails closed: with nothing to compare with, it must not promote on the new release's word."""
    events, data_dir = clicks
    registry = Path(shutil.copytree(first_round[0], tmp_path / "registry"))
    served = release_of(registry)
    model = registry / "deepfm" / served["deepfm"] / "model.onnx"
    model.write_bytes(model.read_bytes()[:-64])  # corrupt: its sha256 no longer matches
    cheap = {"budget_s": 2.0, "ranker_epochs": 1}
    refused = run_retrain(config(registry, data_dir, **cheap), events=events.iloc[:80_000])
    assert not refused.promoted and "current release cannot be loaded" in refused.decision.reason
    assert "sha256" in refused.decision.reason and "--force" in refused.decision.reason
    assert release_of(registry) == served
    forced = run_retrain(config(registry, data_dir, force=True, **cheap), events=events.iloc[:80_000])
    assert forced.promoted and release_of(registry) == forced.release
