"""A redis-server from Debian's package, run on loopback by the project."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import redis

from streamrec.errors import InfraError
from streamrec.infra.processes import OwnedProcess, require_free_port, wait_until
from streamrec.settings import Settings

__all__ = ["RedisServer"]


@dataclass(frozen=True)
class RedisServer:
    settings: Settings

    @property
    def process(self) -> OwnedProcess:
        return OwnedProcess.under(self.settings.home, "redis")

    @property
    def address(self) -> str:
        return f"redis://{self.settings.redis_host}:{self.settings.redis_port}/0"

    def healthy(self) -> bool:
        try:
            client = redis.Redis(host=self.settings.redis_host, port=self.settings.redis_port,
                                 socket_timeout=1.0, socket_connect_timeout=1.0)
            with client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def start(self, timeout_s: float = 30.0) -> bool:
        """Start unless already running; returns True if this call started it."""
        if self.process.pid() is not None:
            self._wait(timeout_s)
            return False
        binary = shutil.which("redis-server")
        if binary is None:
            raise InfraError("redis-server is not installed. Install it with: apt-get install -y redis-server")
        s = self.settings
        require_free_port("Redis", s.redis_host, s.redis_port, "STREAMREC_REDIS_PORT")
        workdir = s.home / "redis"
        workdir.mkdir(parents=True, exist_ok=True)
        # The append-only file makes a restart keep sessions, seen-ids and counters: without it a
        # restart empties Redis while Kafka's committed offsets say those events were applied.
        # fsync every second: a stop or a killed redis-server loses nothing (writes reach the OS
        # before the reply), a crash of the machine up to about a second of them; "always" would
        # close that gap at a large write cost.
        argv = [
            binary, "--bind", s.redis_host, "--port", str(s.redis_port), "--dir", str(workdir),
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--protected-mode", "yes", "--daemonize", "no",
        ]
        self.process.start(argv)
        self._wait(timeout_s)
        return True

    def _wait(self, timeout_s: float) -> None:
        if not wait_until(self.healthy, timeout_s):
            raise InfraError(f"Redis did not answer PING within {timeout_s:.0f}s. Log tail:\n{self.process.log_tail()}")

    def stop(self) -> bool:
        return self.process.stop()
