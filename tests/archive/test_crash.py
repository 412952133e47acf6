"""Crash tests: the archiver killed with SIGKILL mid-stream, mid-file and at random moments, then
restarted, while events (some of them sent twice) are being published. The archive must end up
holding every published event exactly once."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from streamrec.archive.consumer import ArchiveConfig, run_archiver
from streamrec.archive.layout import date_dir, leftover_temp_files, list_dates, list_parts
from streamrec.settings import Settings
from tests.archive.helpers import raw_event_ids
from tests.stream.helpers import make_events, publish

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def _settings(isolated: Settings, root: Path, **changes: object) -> Settings:
    # A short group session: after a SIGKILL, the restarted archiver waits this long for the dead
    # member's partitions (6 s is the broker's minimum).
    defaults: dict[str, object] = {"archive_flush_events": 40, "archive_flush_s": 0.5}
    return isolated.replace(archive_dir=root, session_timeout_s=6.0, heartbeat_interval_s=1.0,
                            **(defaults | changes))


def _spawn(settings: Settings, argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings.to_env(), "PYTHONUNBUFFERED": "1"}
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", *argv], cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _files(root: Path) -> int:
    return sum(len(list_parts(date_dir(root, day))) for day in list_dates(root))


def _wait(condition: object, timeout_s: float, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():  # type: ignore[operator]
        if proc.poll() is not None:
            raise AssertionError(f"the archiver exited with {proc.returncode} before {what}:\n{log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout_s}s:\n{log.read_text()[-3000:]}")
        time.sleep(0.05)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)


def test_sigkill_mid_file_and_at_random_moments_loses_and_duplicates_nothing(
        isolated: Settings, tmp_path: Path) -> None:
    root, log = tmp_path / "archive", tmp_path / "archiver.log"
    settings = _settings(isolated, root)
    events = make_events(3000, sessions=100, seed=21)
    rng = random.Random(21)
    stream = list(events)
    for event in rng.sample(events, 150):  # resends, a little later than the original
        stream.insert(min(len(stream), stream.index(event) + rng.randint(1, 300)), event)
    publisher = threading.Thread(target=publish, args=(settings, stream), kwargs={"rate": 150.0})
    publisher.start()
    try:
        # 1. Killed between the fsync of a temp file and its rename.
        marker = tmp_path / "paused"
        proc = _spawn(settings, ["tests.archive.crash_harness", str(marker), "5"], log)
        _wait(marker.exists, 90, "pause before a rename", proc, log)
        temp = Path(marker.read_text())
        _kill(proc)
        assert temp.exists() and temp in set(leftover_temp_files(root))
        killed_mid_file = _files(root)

        # 2. `streamrec archive` killed at random moments once it has published a few more files.
        for _ in range(3):
            before = _files(root)
            proc = _spawn(settings, ["streamrec", "archive"], log)
            # (once the publisher is done there may be nothing new to write: then any moment will do)
            _wait(lambda: _files(root) >= before + 2 or not publisher.is_alive(), 90, "new files",  # noqa: B023
                  proc, log)
            time.sleep(rng.uniform(0.0, 0.4))
            _kill(proc)
    finally:
        publisher.join(timeout=120)
    assert not publisher.is_alive()

    # 3. Restarted after the last crash, it runs until caught up.
    report = run_archiver(settings, ArchiveConfig.from_settings(settings, idle_s=2.0))

    archived = raw_event_ids(root)
    published = {e["event_id"] for e in events}
    assert not temp.exists() and list(leftover_temp_files(root)) == []
    assert "left by a writer that stopped mid-file" in log.read_text()
    assert len(archived) == len(set(archived)), "an event was archived twice"
    assert set(archived) == published, f"lost: {sorted(published - set(archived))[:10]}"
    assert 0 < killed_mid_file < _files(root)
    print(f"published {len(stream)} records ({len(published)} distinct events); archived {len(archived)}, "
          f"duplicates 0, lost 0; the last run read {report.records} records and dropped "
          f"{report.duplicates} duplicate(s)")


def test_sigterm_flushes_and_commits_what_is_pending(isolated: Settings, tmp_path: Path) -> None:
    root, log = tmp_path / "archive", tmp_path / "archiver.log"
    settings = _settings(isolated, root, archive_flush_events=150, archive_flush_s=600.0)
    events = make_events(200, sessions=20, seed=22)
    proc = _spawn(settings, ["streamrec", "archive"], log)
    try:
        publish(settings, events)
        _wait(lambda: _files(root) > 0, 90, "first flush", proc, log)
        time.sleep(1.0)  # the other 50 records are polled, and wait for a flush that only SIGTERM brings
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            _kill(proc)
    assert sorted(raw_event_ids(root)) == sorted(e["event_id"] for e in events)
    assert "archived 200 event(s) of 200 record(s)" in log.read_text()
    assert run_archiver(settings, ArchiveConfig.from_settings(settings, idle_s=0.0)).records == 0
