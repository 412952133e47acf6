"""The worker's Faust data directory lives under STREAMREC_HOME, never in the current directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.settings import Settings
from streamrec.stream.app import create_app
from streamrec.stream.datadir import remove_faust_data


def test_the_app_keeps_its_data_under_home_and_a_run_removes_it(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    settings = Settings(home=home, app_id="run-1")
    app = create_app(settings)
    assert app.conf.datadir == home / "faust" / "run-1"
    app.conf.datadir.mkdir()  # as Faust does when the worker starts
    (home / "faust" / "run-1-dry" / "v1").mkdir(parents=True)  # an app named after it
    (home / "faust" / "run-10").mkdir()  # another run's
    remove_faust_data(settings)
    assert sorted(p.name for p in (home / "faust").iterdir()) == ["run-10"]
    assert list(cwd.iterdir()) == []
