from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.archive.writer import ArchiveWriter
from streamrec.cli import build_parser, main


@pytest.mark.parametrize("command", [["archive"], ["archive", "seed"], ["archive", "stats"]], ids=" ".join)
def test_every_archive_command_has_help(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*command, "--help"])
    assert info.value.code == 0
    assert "usage: streamrec archive" in capsys.readouterr().out


def test_dir_is_accepted_before_or_after_the_subcommand(tmp_path: Path) -> None:
    parse = build_parser().parse_args
    assert parse(["archive", "--dir", "a", "stats"]).dir == "a"
    assert parse(["archive", "stats", "--dir", "b"]).dir == "b"
    assert parse(["archive", "seed", "--dataset", "ml-100k"]).dir is None
    assert parse(["archive", "--until-idle", "3"]).until_idle == 3.0


def test_seed_then_stats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = str(tmp_path / "archive")
    assert main(["archive", "seed", "--dataset", "ml-100k", "--limit", "500", "--dir", root, "-q"]) == 0
    assert "500 of 500 event(s) written" in capsys.readouterr().out
    assert main(["archive", "stats", "--dir", root]) == 0
    out = capsys.readouterr().out
    assert "events             500" in out and "distinct sessions" in out


def test_a_second_archiver_on_the_same_directory_is_refused_with_a_message(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with ArchiveWriter(tmp_path):
        assert main(["archive", "seed", "--dataset", "ml-100k", "--limit", "10", "--dir", str(tmp_path), "-q"]) == 2
    assert "another archiver is writing" in capsys.readouterr().err
