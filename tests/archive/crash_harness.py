"""``streamrec archive`` that stops dead in the middle of a file, for the crash test.

Run as ``python -m tests.archive.crash_harness MARKER N`` with the settings in the environment:
it archives as usual until the N-th file is written to its temp name and fsync'd, then writes
the temp file's path to MARKER and sleeps before the rename, waiting for its SIGKILL. MARKER
appears whole (``write_atomic``): the test polls for it, and a marker seen created but not yet
written once read as ``Path('')``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from streamrec.archive.consumer import ArchiveConfig, run_archiver
from streamrec.files import write_atomic
from streamrec.settings import Settings


def main(marker: Path, pause_at: int) -> None:
    written = 0

    def pause(temp: Path) -> None:
        nonlocal written
        written += 1
        if written == pause_at:
            write_atomic(marker, str(temp))
            time.sleep(600)

    settings = Settings.from_env()
    run_archiver(settings, ArchiveConfig.from_settings(settings), before_publish=pause)


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]))
