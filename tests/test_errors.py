"""The exception hierarchy: one module defines it, everything derives from ``StreamrecError``, and
the CLI prints one line."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from streamrec import errors
from streamrec.cli import main

PACKAGE = Path(errors.__file__).parent


@pytest.mark.parametrize("name", errors.__all__)
def test_every_error_derives_from_the_base_and_says_when_it_is_raised(name: str) -> None:
    cls = getattr(errors, name)
    assert issubclass(cls, errors.StreamrecError) and cls.__doc__


def test_exceptions_live_in_errors_py_or_derive_from_the_hierarchy() -> None:
    strays = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py" or "_proto" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases]
            if any(b.endswith(("Error", "Exception")) for b in bases):
                public = not node.name.startswith("_")
                if public or not set(bases) <= set(errors.__all__):
                    strays.append(f"{path.relative_to(PACKAGE)}: {node.name}({', '.join(bases)})")
    assert strays == []


def test_the_cli_prints_a_streamrec_error_as_one_line(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("STREAMREC_KAFKA_SECURITY_PROTOCOL", "TLS")
    assert main(["settings"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("streamrec: error: STREAMREC_KAFKA_SECURITY_PROTOCOL")
