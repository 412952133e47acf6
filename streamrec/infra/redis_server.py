"""A redis-server from Debian's package, run on loopback by the project.

Memory is capped (``Settings.redis_maxmemory_mb``) with the policy ``noeviction``. streamrec bounds
its own key families: sessions are trimmed and expire when idle, the popularity counters keep the
most popular items, co-occurrence keys are trimmed and expire. Eviction by Redis would instead drop
whatever key it picks, such as a session's dedup set or the applied-offsets hash that makes a
redelivery harmless, and events would then be double-counted. At the cap Redis refuses writes
(OOM) and keeps serving reads: the worker retries the batch with backoff (its lag grows, nothing is
lost) and the server keeps answering.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import redis

from streamrec.errors import InfraError
from streamrec.infra.processes import OwnedProcess, require_free_port, wait_until
from streamrec.settings import Settings

__all__ = ["EVICTION_POLICY", "RedisServer"]

log = logging.getLogger(__name__)

EVICTION_POLICY = "noeviction"  # never evict: see the module docstring


@dataclass(frozen=True)
class RedisServer:
    settings: Settings
    persistent: bool = True  # the append-only file (see argv); False only for a throwaway server (bench memory)

    @property
    def process(self) -> OwnedProcess:
        return OwnedProcess.under(self.settings.home, "redis")

    @property
    def address(self) -> str:
        return f"redis://{self.settings.redis_host}:{self.settings.redis_port}/0"

    @property
    def maxmemory_bytes(self) -> int:
        """The cap in bytes (Redis's ``mb`` is 1024 * 1024 bytes); 0: no cap."""
        return self.settings.redis_maxmemory_mb * 1024 * 1024

    def _client(self) -> redis.Redis:
        return redis.Redis(host=self.settings.redis_host, port=self.settings.redis_port,
                           socket_timeout=1.0, socket_connect_timeout=1.0)

    def healthy(self) -> bool:
        try:
            with self._client() as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def argv(self, binary: str, workdir: Path) -> list[str]:
        s = self.settings
        # The append-only file makes a restart keep sessions, seen-ids and counters: without it a
        # restart empties Redis while Kafka's committed offsets say those events were applied.
        # fsync every second: a stop or a killed redis-server loses nothing (writes reach the OS
        # before the reply), a crash of the machine up to about a second of them; "always" would
        # close that gap at a large write cost.
        argv = [
            binary, "--bind", s.redis_host, "--port", str(s.redis_port), "--dir", str(workdir),
            "--save", "", "--appendonly", "yes" if self.persistent else "no", "--appendfsync", "everysec",
            "--protected-mode", "yes", "--daemonize", "no",
        ]
        if s.redis_maxmemory_mb:
            argv += ["--maxmemory", f"{s.redis_maxmemory_mb}mb"]
        return argv + ["--maxmemory-policy", EVICTION_POLICY]

    def start(self, timeout_s: float = 30.0) -> bool:
        """Start unless already running; returns True if this call started it. A running one of
        ours gets the memory cap of the settings applied live (CONFIG SET), as a start would."""
        if self.process.pid() is not None:
            self._wait(timeout_s)
            self.apply_memory_cap()
            return False
        binary = shutil.which("redis-server")
        if binary is None:
            raise InfraError("redis-server is not installed. Install it with: apt-get install -y redis-server")
        s = self.settings
        require_free_port("Redis", s.redis_host, s.redis_port, "STREAMREC_REDIS_PORT")
        workdir = s.home / "redis"
        workdir.mkdir(parents=True, exist_ok=True)
        self.process.start(self.argv(binary, workdir))
        self._wait(timeout_s)
        return True

    def apply_memory_cap(self) -> None:
        """``maxmemory`` and ``maxmemory-policy`` of the settings, on the running server."""
        try:
            with self._client() as client:
                client.config_set("maxmemory", str(self.maxmemory_bytes))
                client.config_set("maxmemory-policy", EVICTION_POLICY)
                used = int(client.info("memory")["used_memory"])
        except redis.RedisError as exc:
            raise InfraError(f"cannot set the memory cap of the running Redis ({exc})") from exc
        if self.maxmemory_bytes and used >= self.maxmemory_bytes:
            log.warning("Redis already uses %d bytes, above its cap of %d (STREAMREC_REDIS_MAXMEMORY_MB): "
                        "writes are refused until keys expire or the cap is raised", used, self.maxmemory_bytes)

    def _wait(self, timeout_s: float) -> None:
        if not wait_until(self.healthy, timeout_s):
            raise InfraError(f"Redis did not answer PING within {timeout_s:.0f}s. Log tail:\n{self.process.log_tail()}")

    def stop(self) -> bool:
        return self.process.stop()
