from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamrec.cli import build_parser, main

COMMANDS = [["infra"], ["worker"], ["publish"], ["sessions"], ["sessions", "show"], ["sessions", "list"], ["dlq"], ["stats"],
            ["bench"], ["bench", "ingest"], ["bench", "models"], ["settings"], ["evaluate"], ["train"]]


@pytest.mark.parametrize("command", [[], *COMMANDS], ids=lambda c: " ".join(c) or "streamrec")
def test_every_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*command, "--help"])
    assert info.value.code == 0
    assert "usage: streamrec" in capsys.readouterr().out


def test_bad_settings_are_reported_without_a_traceback(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMREC_SESSION_TTL_S", "soon")
    assert main(["settings"]) == 2
    assert "STREAMREC_SESSION_TTL_S='soon' is not a valid int" in capsys.readouterr().err


def test_train_help_names_every_model_and_its_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from streamrec.train.jobs import BUILDERS

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, builder in BUILDERS.items():
        assert name in text
        assert f"{builder.max_len} for {name}" in text or f"{builder.max_len} for sasrec and {name}" in text, name


def test_train_refuses_an_unknown_model_without_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "--models", "sasrec,gru5rec"]) == 2
    assert "sasrec, gru4rec, bert4rec" in capsys.readouterr().err


def test_train_without_publishing_prints_the_results_and_writes_the_curves(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMREC_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("STREAMREC_HOME", str(tmp_path / "home"))
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a small model on a shared machine
    try:
        code = main(["train", "--models", "gru4rec", "--dataset", "ml-100k", "--protocol", "session", "--epochs", "1",
                     "--batch-size", "32", "--no-publish", "-q"])
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0
    assert "training gru4rec on ML-100K" in out and "batch 32" in out
    assert re.search(r"^gru4rec +1 +1 epochs ", out, re.MULTILINE), out
    assert (tmp_path / "home" / "train" / "gru4rec-ml-100k-session-curves.png").is_file()
