"""``run_server``: only the optional uvloop import may fail quietly; nothing else restarts the server."""

from __future__ import annotations

import asyncio
import sys

import pytest

from streamrec.serve import server
from streamrec.settings import Settings


def test_a_failed_import_inside_the_server_propagates_and_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[bool] = []

    async def broken_serve(settings: Settings, reuse_port: bool = False, loader: object = None) -> None:
        calls.append(reuse_port)
        raise ImportError("No module named 'onnxruntime'")

    monkeypatch.setattr(server, "serve", broken_serve)
    with pytest.raises(ImportError, match="onnxruntime"):
        server.run_server(Settings(), reuse_port=True)
    assert calls == [True]  # once: not started again under another event loop


def test_without_uvloop_the_server_runs_on_asyncio(monkeypatch: pytest.MonkeyPatch) -> None:
    ran: list[str] = []

    async def fake_serve(settings: Settings, reuse_port: bool = False, loader: object = None) -> None:
        ran.append(type(asyncio.get_running_loop()).__module__)

    monkeypatch.setitem(sys.modules, "uvloop", None)  # makes `import uvloop` raise ImportError
    monkeypatch.setattr(server, "serve", fake_serve)
    server.run_server(Settings())
    assert ran and not ran[0].startswith("uvloop")
