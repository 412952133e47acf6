"""Start and stop daemons that we own, identified by a pid file.

A pid file records the pid *and* the process start time, so a recycled pid that now
belongs to somebody else is never signalled: ``down`` stops only what ``up`` started.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from streamrec.errors import InfraError
from streamrec.files import write_atomic

__all__ = ["OwnedProcess", "free_port", "port_open", "wait_until"]


def _start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may hold spaces or parentheses; fields resume after the last ')'
    return int(stat.rsplit(")", 1)[1].split()[19])


@dataclass(frozen=True)
class OwnedProcess:
    name: str
    pidfile: Path
    logfile: Path

    @classmethod
    def under(cls, home: Path, name: str) -> OwnedProcess:
        """The layout ``infra`` uses: ``home/run/<name>.pid`` and ``home/logs/<name>.log``."""
        return cls(name, home / "run" / f"{name}.pid", home / "logs" / f"{name}.log")

    def pid(self) -> int | None:
        """The pid if our process is still alive, else None (a stale pid file is removed)."""
        try:
            record = json.loads(self.pidfile.read_text())
        except (OSError, ValueError):
            return None
        pid, started = int(record["pid"]), int(record["start_time"])
        if _start_time(pid) != started or _is_zombie(pid):
            self.pidfile.unlink(missing_ok=True)
            return None
        return pid

    def start(self, argv: Sequence[str], env: dict[str, str] | None = None) -> int:
        """Spawn a daemon in its own session, output to the log file (no Popen object to outlive)."""
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(self.logfile), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        pid = os.posix_spawnp(argv[0], list(argv), dict(os.environ if env is None else env),
                              file_actions=actions, setsid=True)
        started = None
        for _ in range(100):
            started = _start_time(pid)
            if started is not None:
                break
            time.sleep(0.01)
        # whole or absent: ``pid()`` in another process (``infra status``, a test) must never read half of it
        write_atomic(self.pidfile, json.dumps({"pid": pid, "start_time": started, "argv": list(argv)}))
        return pid

    def stop(self, timeout_s: float = 30.0) -> bool:
        """SIGTERM, then SIGKILL after ``timeout_s``. Returns whether a process was stopped."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGTERM)
        if not wait_until(lambda: self.pid() is None, timeout_s, interval_s=0.1):
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: self.pid() is None, 10.0, interval_s=0.1)
        self.pidfile.unlink(missing_ok=True)
        return True

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _is_zombie(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    if state == "Z":
        try:  # reap it if it is our child, so the pid is freed
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return True
    return False


def port_open(host: str, port: int, timeout_s: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now, picked by the OS (another process may take it before we do, in
    which case the start fails with ``require_free_port``'s message)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout_s: float, interval_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def require_free_port(name: str, host: str, port: int, env_var: str) -> None:
    if port_open(host, port):
        raise InfraError(
            f"{name} cannot start: {host}:{port} is already taken by a process that streamrec did not start. "
            f"Stop it, or choose another port with {env_var}."
        )
