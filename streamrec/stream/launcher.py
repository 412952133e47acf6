"""Runs ``streamrec worker`` as a child process: for benchmarks, tests and ``make demo``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from streamrec.errors import InfraError
from streamrec.settings import Settings
from streamrec.stream.modes import DryRun

__all__ = ["WorkerProcess"]

READY_MARK = "Ready"  # what Faust's worker logs once its agents run


class WorkerProcess:
    def __init__(self, settings: Settings, logfile: Path, loglevel: str = "info", dry_run: DryRun | None = None) -> None:
        self.settings, self.logfile, self.loglevel, self.dry_run = settings, logfile, loglevel, dry_run
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait_ready_s: float = 90.0) -> WorkerProcess:
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1"}
        self._offset = self.logfile.stat().st_size if self.logfile.exists() else 0
        with open(self.logfile, "ab") as log:
            argv = [sys.executable, "-m", "streamrec", "worker", "--loglevel", self.loglevel]
            if self.dry_run is not None:
                argv += ["--dry-run", self.dry_run]
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        if wait_ready_s:
            try:
                self.wait_ready(wait_ready_s)
            except BaseException:
                self.kill()  # never leave a half-started worker behind
                raise
        return self

    def log_text(self) -> str:
        try:
            with open(self.logfile, "rb") as f:
                f.seek(self._offset)
                return f.read().decode(errors="replace")
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise InfraError(f"worker exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}")
            if READY_MARK in self.log_text():
                return
            time.sleep(0.1)
        raise InfraError(f"worker not ready after {timeout_s:.0f}s:\n{self.log_text()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL: no commit, no goodbye; what a crash looks like."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> WorkerProcess:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
