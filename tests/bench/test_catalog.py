"""``streamrec bench catalog`` on a real model's vectors and sessions (SASRec on ML-100K, published with
the session contract), at small sizes: every method timed, recall against exact, the plot, the JSON,
and the targets judged at 10⁶ items only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamrec.bench.catalog import TARGETS, _met
from streamrec.cli import main

pytestmark = pytest.mark.integration


def _train(registry: Path, *contract: str) -> None:
    assert main(["train", "--models", "sasrec", "--dataset", "ml-100k", "--epochs", "1", "--max-len", "20",
                 *contract, "--registry", str(registry), "-q"]) == 0


def test_the_bench_times_the_product_and_each_index_on_real_sessions(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    registry = tmp_path / "models"
    _train(registry, "--contract", "session")
    out, plot = tmp_path / "catalog.json", tmp_path / "catalog.png"
    assert main(["bench", "catalog", "--registry", str(registry), "--sizes", "2000", "6000", "--kinds", "ivf",
                 "hnsw", "--queries", "20", "--json", str(out), "--plot", str(plot)]) == 0  # no 10⁶: nothing missed
    result = json.loads(out.read_text())
    rows = {(r["size"], r["method"]): r for r in result["rows"]}
    assert set(rows) == {(n, m) for n in (2000, 6000) for m in ("exact", "ivf", "hnsw")}
    assert result["queries"] == 20 and result["model"]["dataset"] == "ml-100k" and result["met"] == {}
    assert rows[6000, "exact"]["memory_bytes"] == 6000 * result["dim"] * 4
    assert all(r["recall@500"] >= 0.9 and 0 < r["p50_ms"] <= r["p99_ms"] for r in rows.values())
    assert plot.stat().st_size > 0 and "recall@500" in capsys.readouterr().out


def test_a_model_published_with_the_scores_contract_is_refused_with_the_fix(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    registry = tmp_path / "models"
    _train(registry)
    assert main(["bench", "catalog", "--registry", str(registry), "--sizes", "2000", "--queries", "5"]) == 2
    assert "--contract session" in capsys.readouterr().err


def test_the_targets_are_judged_at_a_million_items() -> None:
    n = TARGETS["size"]
    row = {"size": n, "method": "ivf", "p50_ms": 0.5, "p99_ms": 0.6, "recall@500": 0.98, "memory_bytes": 3 * 10**8}
    assert _met([row, {**row, "method": "exact", "p50_ms": 11.0}]) == {
        "ivf": {"p50_ms": True, "p99_ms": True, "recall@500": True, "index_bytes": True}}
    slow = {**row, "method": "usearch", "p50_ms": 1.4, "memory_bytes": 2 * 10**9}
    assert _met([slow, {**row, "size": 10**5, "p50_ms": 9.0}]) == {
        "usearch": {"p50_ms": False, "p99_ms": True, "recall@500": True, "index_bytes": False}}
