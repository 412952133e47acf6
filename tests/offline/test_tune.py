"""``streamrec tune``: trials on validation only, and the command that trains the best of them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from streamrec.cli import main
from streamrec.errors import ConfigError
from streamrec.offline.train_job import parse_network
from streamrec.offline.tune import TuneJob


def test_a_bad_job_is_refused() -> None:
    with pytest.raises(ConfigError, match="no search space for 'bert4rec'"):
        TuneJob(model="bert4rec", data_dir=Path())
    with pytest.raises(ConfigError, match="trials"):
        TuneJob(trials=0, data_dir=Path())


@pytest.mark.integration
def test_a_search_records_each_trial_and_prints_a_train_command_for_the_best(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path / "home"))
    out = tmp_path / "search.json"
    assert main(["tune", "--model", "gru4rec", "--dataset", "ml-100k", "--trials", "2", "--budget-min", "0.03",
                 "--json", str(out), "-q"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert [t["number"] for t in report["trials"]] == [0, 1]
    assert report["best"]["value"] == max(t["value"] for t in report["trials"]) > 0
    assert all(t["network"]["training"] == "padded" and t["epochs"] >= 1 for t in report["trials"])
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    command = report["train_command"]
    assert command in printed and command.startswith("streamrec train --models gru4rec --dataset ml-100k")
    sets = [part.split(" ", 1)[0] for part in command.split("--set ")[1:]]
    assert parse_network(sets)["gru4rec"] == report["best"]["network"]  # the command round-trips the settings
