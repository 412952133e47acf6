"""Where a worker's Faust app keeps its data directory, and its removal after a throwaway run.

Faust makes ``<app id>-data`` in the current directory by default, wherever a worker, a test or a
bench starts one; ours go under ``STREAMREC_HOME`` (``var/faust/<app id>``). With the memory store
they hold only empty folders, so a run that used a made-up app id (tests, benches) removes them.
This module imports no Faust, so that cleaning up costs no Faust import.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from streamrec.settings import Settings

__all__ = ["faust_datadir", "remove_faust_data"]


def faust_datadir(settings: Settings) -> Path:
    return settings.home / "faust" / settings.app_id


def remove_faust_data(settings: Settings) -> None:
    """Remove the data directories of ``settings.app_id`` and of the apps named after it
    (``<app id>-<suffix>``, as the ingest bench's layers are)."""
    root = faust_datadir(settings).parent
    for path in (*root.glob(f"{settings.app_id}-*"), root / settings.app_id):
        shutil.rmtree(path, ignore_errors=True)
