from __future__ import annotations

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
