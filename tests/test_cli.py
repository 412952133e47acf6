from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streamrec.cli import build_parser, main
from streamrec.settings import Settings

COMMANDS = [["infra"], ["worker"], ["publish"], ["sessions"], ["sessions", "show"], ["sessions", "list"], ["dlq"], ["stats"],
            ["bench"], ["bench", "ingest"], ["bench", "models"], ["settings"], ["evaluate"], ["train"],
            ["archive"], ["archive", "seed"], ["archive", "stats"], ["bench", "peer"], ["bench", "serve"],
            ["bench", "memory"], ["bench", "startup"],
            ["tune"], ["train-ranker"], ["serve"], ["recommend"], ["health"], ["live"], ["retrain"], ["models"],
            ["models", "list"], ["models", "rollback"]]
CLIENTS = [["recommend", "--session", "s"], ["health"], ["live"]]  # the commands that call the server over TLS


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    return next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def test_the_help_lists_every_command_and_each_has_help() -> None:
    commands = _subparsers(build_parser())
    assert {c[0] for c in COMMANDS} == set(commands)


def test_each_area_handles_its_own_commands() -> None:
    """cli.py only assembles: every handler lives in the area that registers it (``settings`` excepted)."""
    for name, parser in _subparsers(build_parser()).items():
        module = parser.get_default("func").__module__
        expected = r"streamrec\.cli" if name == "settings" else r"streamrec\.\w+\.commands"
        assert re.fullmatch(expected, module), (name, module)


def test_help_imports_no_heavy_library() -> None:
    """Every run builds every parser, so registering a command must not import what running it needs
    (the container's ``streamrec health`` probe runs every few seconds)."""
    code = "import sys; from streamrec.cli import build_parser; build_parser(); print(' '.join(sorted(sys.modules)))"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(run.stdout.split())
    heavy = {"torch", "faust", "pyarrow", "pandas", "grpc", "kafka", "redis", "onnxruntime", "matplotlib", "sklearn"}
    assert not heavy & loaded, heavy & loaded


@pytest.mark.parametrize("command", CLIENTS, ids=lambda c: c[0])
def test_every_client_takes_the_same_target_and_tls_flags(command: list[str]) -> None:
    from streamrec.serve.client import ClientTLS
    from streamrec.serve.commands import client_tls, target_of

    args = build_parser().parse_args([*command, "--target", "h:1", "--ca", "ca.pem", "--cert", "c.pem",
                                      "--key", "k.pem"])
    assert target_of(args, Settings()) == "h:1"
    assert client_tls(args) == ClientTLS(Path("ca.pem"), Path("c.pem"), Path("k.pem"))
    plain = build_parser().parse_args(command)
    assert client_tls(plain) == ClientTLS()
    assert target_of(plain, Settings(grpc_host="0.0.0.0", grpc_port=7)) == "127.0.0.1:7"  # bound to all: loopback


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
    from streamrec.offline.train_job import BUILDERS

    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, builder in BUILDERS.items():
        assert name in text
        assert f"{name} {builder.max_len}, {builder.batch_size}, {builder.lr:g}" in text, name


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


def test_bench_ingest_takes_lists_of_rates_and_fsync_modes_and_refuses_bad_ones(
        capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["bench", "ingest", "--rate", "1000,2500", "--fsync", "everysec,no", "--layers"])
    assert (args.rate, args.fsync, args.layers) == ([1000.0, 2500.0], ["everysec", "no"], True)
    assert build_parser().parse_args(["worker", "--dry-run"]).dry_run == "count"
    for bad in (["--rate", "1000,0"], ["--rate", "fast"], ["--fsync", "sometimes"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["bench", "ingest", *bad])
        assert "bench ingest: error" in capsys.readouterr().err


def test_bench_serve_takes_a_flood_as_a_positive_multiple_of_saturation(capsys: pytest.CaptureFixture[str]) -> None:
    assert build_parser().parse_args(["bench", "serve", "--flood", "2"]).flood == 2.0
    assert build_parser().parse_args(["bench", "serve"]).flood is None
    for bad in ("0", "-1", "nan", "inf", "twice"):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["bench", "serve", "--flood", bad])
        err = capsys.readouterr().err
        assert "bench serve: error" in err and "multiple of saturation" in err, err

