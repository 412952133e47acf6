from __future__ import annotations

import json
import math
import sys
import types
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from streamrec.cli import main
from streamrec.data.base import MovieLens
from streamrec.data.movielens import load
from streamrec.errors import ConfigError
from streamrec.eval import factory, report
from streamrec.eval.evaluate import evaluate, fit_and_evaluate
from streamrec.eval.protocols import Cases, LeaveOneOut, SessionSplit, split
from streamrec.models.base import Recommender, TrainData
from streamrec.models.recommend import item_counts

NEG = -np.inf


class FixedScorer:
    """Returns the same row of scores for every history."""

    name = "fixed"

    def __init__(self, row: Sequence[float]) -> None:
        self.row = np.asarray(row, dtype=np.float32)

    def fit(self, data: TrainData) -> FixedScorer:
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.tile(self.row, (len(histories), 1))


class PopScorer:
    """Training counts: a popularity-like scorer for the tests (the real baseline lives elsewhere)."""

    name = "pop-like"

    def fit(self, data: TrainData) -> PopScorer:
        self.counts = item_counts(data).astype(np.float32)
        self.counts[0] = NEG
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return np.tile(self.counts, (len(histories), 1))


def make_cases(histories: list[list[int]], targets: list[int], exclude: bool) -> Cases:
    hs = [np.array(h, dtype=np.int32) for h in histories]
    return Cases(hs, [np.zeros(len(h), dtype=np.int64) for h in hs], np.array(targets, dtype=np.int32),
                 np.zeros(len(targets), dtype=np.int64), np.array(["u"] * len(targets), dtype=object), exclude)


# ---------------------------------------------------------------- evaluate on hand-built cases


def test_evaluate_by_hand() -> None:
    model = FixedScorer([NEG, 0.9, 0.8, 0.8, 0.1])  # item 1 best; items 2 and 3 tie
    cases = make_cases([[1], [], [4]], [2, 1, 3], exclude=True)
    # case 0: item 1 excluded, 2 ties with 3 -> rank 2; case 1: rank 1; case 2: 1 higher, 2 ties -> rank 3
    got = evaluate(model, cases, cutoffs=(1, 2), train_counts=np.array([0, 3, 2, 1, 0]), progress=False)
    assert got["HR@1"] == pytest.approx(1 / 3) and got["HR@2"] == pytest.approx(2 / 3)
    assert got["NDCG@2"] == pytest.approx((1 / math.log2(3) + 1) / 3)
    assert got["MRR@2"] == pytest.approx((1 / 2 + 1) / 3)
    # top-2 lists (ties to the lower index): [2, 3], [1, 2], [1, 2]
    assert got["Coverage@1"] == pytest.approx(2 / 4) and got["Coverage@2"] == pytest.approx(3 / 4)
    # percentiles of items 1..4 (counts 3, 2, 1, 0): 1, 2/3, 1/3, 0
    assert got["Popularity@1"] == pytest.approx((2 / 3 + 1 + 1) / 3)
    assert got["Popularity@2"] == pytest.approx((2 / 3 + 1 / 3 + 1 + 2 / 3 + 1 + 2 / 3) / 6)


def test_evaluate_does_not_depend_on_the_batch_size() -> None:
    rng = np.random.default_rng(0)
    n = 50
    train = TrainData([rng.integers(1, n + 1, size=rng.integers(1, 20)) for _ in range(40)], [], n, None)  # type: ignore[arg-type]
    model = PopScorer().fit(train)
    histories = [list(rng.choice(np.arange(1, n + 1), size=rng.integers(0, 8), replace=False)) for _ in range(37)]
    targets = [int(rng.choice(np.setdiff1d(np.arange(1, n + 1), h))) for h in histories]
    cases = make_cases(histories, targets, exclude=True)
    runs = [evaluate(model, cases, train_counts=item_counts(train), batch_size=b, progress=False) for b in (1, 7, 512)]
    assert runs[0] == runs[1] == runs[2]


def test_a_constant_scorer_scores_zero() -> None:
    got = evaluate(FixedScorer([NEG] + [1.0] * 30), make_cases([[1], [2, 3]], [5, 9], False), progress=False)
    assert got["HR@20"] == got["NDCG@20"] == got["MRR@20"] == 0.0


def test_evaluate_rejects_a_wrongly_shaped_score_matrix() -> None:
    with pytest.raises(ValueError, match="expected"):
        evaluate(FixedScorer([NEG, 1.0, 2.0]), make_cases([[1]], [2], True), train_counts=np.zeros(5), progress=False)


def test_evaluate_rejects_an_excluded_target() -> None:
    with pytest.raises(ValueError, match="excluded"):
        evaluate(FixedScorer([NEG, 1.0, 2.0]), make_cases([[2]], [2], True), progress=False)


# ---------------------------------------------------------------- factory


def test_factory_builds_the_random_scorer_and_refuses_unknown_names() -> None:
    model = factory.create("random")
    assert isinstance(model, Recommender) and model.name == "random"
    with pytest.raises(ConfigError, match="unknown model 'nope'"):
        factory.create("nope")


def test_factory_names_a_missing_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(factory, "MODULES", {"ghost": "no_such_model"})
    with pytest.raises(ConfigError, match=r"streamrec\.models\.no_such_model, which does not exist"):
        factory.create("ghost")


def test_factory_finds_the_class_by_its_name(monkeypatch: pytest.MonkeyPatch) -> None:
    module = types.ModuleType("streamrec.models._fake")

    class Fake(PopScorer):
        name = "fake"

    class Other(PopScorer):
        name = "other"

    Fake.__module__ = Other.__module__ = module.__name__
    module.Fake, module.Other = Fake, Other  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(factory, "MODULES", {"fake": "_fake", "missing": "_fake"})
    assert type(factory.create("fake")) is Fake
    with pytest.raises(ConfigError, match=r"exactly one class with name = 'missing'.*Fake, Other"):
        factory.create("missing")


def test_random_scorer_is_seeded() -> None:
    train = TrainData([np.array([1, 2])], [np.array([0, 1])], 5, None)  # type: ignore[arg-type]
    a = factory.RandomScorer(seed=3).fit(train).score([np.array([1])] * 2)
    b = factory.RandomScorer(seed=3).fit(train).score([np.array([1])] * 2)
    assert a.shape == (2, 6) and a.dtype == np.float32 and np.all(a[:, 0] == NEG)
    np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- report


def test_table_and_json_name_the_protocol_and_its_metrics(tmp_path: Path) -> None:
    results = {"pop": {"HR@20": 0.1, "MRR@20": 0.05, "NDCG@10": 0.04, "Coverage@20": 0.01, "Popularity@20": 0.99,
                       "fit_s": 0.1, "eval_s": 0.2}}
    summary = {"protocol": "session", "description": "protocol B: sessions", "test_cases": 3}
    table = report.format_table(report.title("ml-1m", summary, "test", 3), results, "session")
    assert table.splitlines()[0] == "ML-1M, protocol B: sessions (test, 3 cases)"
    assert "Recall@20" in table.splitlines()[1] and "0.1000" in table.splitlines()[3]
    doc = report.to_json("ml-1m", "test", "session", summary, results)
    assert doc["protocol"]["columns"]["Recall@20"] == "HR@20"  # type: ignore[index]
    report.write_json(tmp_path / "out" / "r.json", doc)
    assert json.loads((tmp_path / "out" / "r.json").read_text())["results"]["pop"]["HR@20"] == 0.1
    report.plot(tmp_path / "out" / "r.png", "title", results, "session")
    assert (tmp_path / "out" / "r.png").read_bytes()[:4] == b"\x89PNG"


# ---------------------------------------------------------------- on the real ML-100K


@pytest.fixture(scope="module")
def ml100k_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = Path(tmp_path_factory.mktemp("data"))
    load("ml-100k", data_dir)
    return data_dir


@pytest.fixture(scope="module")
def ml100k(ml100k_dir: Path) -> MovieLens:
    return load("ml-100k", ml100k_dir)


@pytest.mark.integration
@pytest.mark.parametrize("protocol", [LeaveOneOut(), SessionSplit(test_days=30, validation_days=30)],
                         ids=["loo", "session"])
def test_a_popularity_scorer_beats_random_on_ml_100k(ml100k: MovieLens, protocol: LeaveOneOut | SessionSplit) -> None:
    parts = split(ml100k, protocol)
    for part in ("validation", "test"):
        pop = fit_and_evaluate(PopScorer(), parts, part=part, progress=False)  # type: ignore[arg-type]
        rnd = fit_and_evaluate(factory.RandomScorer(), parts, part=part, progress=False)
        assert pop["HR@20"] > 2 * rnd["HR@20"] and pop["NDCG@10"] > 2 * rnd["NDCG@10"], (part, pop, rnd)
        assert pop["Popularity@20"] > 0.95 and 0.4 < rnd["Popularity@20"] < 0.6
        assert pop["Coverage@20"] < rnd["Coverage@20"]
        assert pop["cases"] == len(getattr(parts, part))


@pytest.mark.integration
def test_the_evaluate_command_writes_a_table_json_and_plot(ml100k_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(ml100k_dir))
    out = tmp_path / "eval.json"
    code = main(["evaluate", "--dataset", "ml-100k", "--protocol", "session", "--models", "random",
                 "--test-days", "30", "--limit-cases", "500", "--json", str(out), "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "ML-100K, protocol B" in printed and "(test, 500 cases)" in printed and "Recall@20" in printed
    doc = json.loads(out.read_text())
    assert doc["protocol"]["test_days"] == 30 and doc["protocol"]["limit_cases"] == 500
    assert set(doc["results"]["random"]) >= {"HR@20", "MRR@20", "NDCG@10", "Coverage@20", "Popularity@20",
                                             "fit_s", "eval_s"}
    assert out.with_suffix(".png").is_file()


def test_the_evaluate_command_refuses_session_options_for_loo(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--protocol", "loo", "--models", "random", "--gap", "60"]) == 2
    assert "--gap and --test-days apply to --protocol session only" in capsys.readouterr().err


def test_the_evaluate_command_refuses_an_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--models", "random,nope"]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["evaluate", "--models", " , "]) == 2
    assert "--models needs at least one name" in capsys.readouterr().err
