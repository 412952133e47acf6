"""A real Redis Cluster on loopback: N ``redis-server`` processes (Debian's package) in cluster mode,
joined by ``redis-cli --cluster create``. For tests and for trying the worker and the server on a
cluster (``STREAMREC_REDIS_URL=redis+cluster://127.0.0.1:<first port>``)::

    with LocalRedisCluster(Path("var/redis-cluster"), ports=(17001, 17002, 17003)) as cluster:
        print(cluster.url)

Masters only (no replicas): the point is sharding, every key in the slot its hash tag picks.
Each node also takes its port + 10000 (the cluster bus).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import redis

from streamrec.errors import InfraError
from streamrec.infra.processes import OwnedProcess, free_port, port_open, require_free_port, wait_until

__all__ = ["LocalRedisCluster", "free_cluster_ports"]

BUS_OFFSET = 10000  # Redis's cluster bus port is the client port + 10000


def free_cluster_ports(n: int, host: str = "127.0.0.1") -> tuple[int, ...]:
    """``n`` ports that are free along with their bus ports (a race with other processes is possible,
    in which case ``start`` fails with a clear message)."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port(host)
        if port + BUS_OFFSET < 65536 and port not in ports and not port_open(host, port + BUS_OFFSET):
            ports.append(port)
    return tuple(ports)


@dataclass(frozen=True)
class LocalRedisCluster:
    home: Path  # pid files, logs and each node's nodes.conf live under it
    ports: tuple[int, ...] = (17001, 17002, 17003)
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """What ``STREAMREC_REDIS_URL`` should be: any node, marked as a cluster."""
        return f"redis+cluster://{self.host}:{self.ports[0]}/0"

    def _process(self, port: int) -> OwnedProcess:
        return OwnedProcess.under(self.home, f"redis-cluster-{port}")

    def healthy(self) -> bool:
        """Every node answers and reports ``cluster_state:ok`` (all 16384 slots served)."""
        try:
            for port in self.ports:
                with redis.Redis(host=self.host, port=port, socket_timeout=1.0, socket_connect_timeout=1.0) as node:
                    if node.cluster("INFO").get("cluster_state") != "ok":
                        return False
            return True
        except redis.RedisError:
            return False

    def start(self, timeout_s: float = 30.0) -> bool:
        """Start the nodes and create the cluster unless it is already up; returns True if started."""
        if len(self.ports) < 3:
            raise InfraError("a Redis Cluster needs at least 3 master nodes")
        if all(self._process(p).pid() is not None for p in self.ports) and self.healthy():
            return False
        binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if binary is None or cli is None:
            raise InfraError("redis-server is not installed. Install it with: apt-get install -y redis-server")
        for port in self.ports:
            if self._process(port).pid() is not None:
                continue
            require_free_port("Redis Cluster", self.host, port, "the ports argument")
            require_free_port("Redis Cluster bus", self.host, port + BUS_OFFSET, "the ports argument")
            workdir = self.home / "redis-cluster" / str(port)
            workdir.mkdir(parents=True, exist_ok=True)
            (workdir / "nodes.conf").unlink(missing_ok=True)  # a fresh cluster, not a stale one
            self._process(port).start([
                binary, "--bind", self.host, "--port", str(port), "--dir", str(workdir),
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", "5000", "--save", "", "--appendonly", "no", "--daemonize", "no",
            ])
        if not wait_until(lambda: all(self._ping(p) for p in self.ports), timeout_s):
            raise InfraError(f"Redis Cluster nodes did not answer PING within {timeout_s:.0f}s. "
                             f"Log tail:\n{self._process(self.ports[0]).log_tail()}")
        created = subprocess.run([cli, "--cluster", "create", *(f"{self.host}:{p}" for p in self.ports),
                                  "--cluster-replicas", "0", "--cluster-yes"],
                                 capture_output=True, text=True, timeout=timeout_s, check=False)
        if created.returncode != 0:
            raise InfraError(f"redis-cli --cluster create failed:\n{created.stdout}\n{created.stderr}")
        if not wait_until(self.healthy, timeout_s):
            raise InfraError(f"the Redis Cluster did not reach cluster_state:ok within {timeout_s:.0f}s")
        return True

    def stop(self) -> bool:
        """Stop every node this object started; returns whether any was running."""
        return any([self._process(port).stop() for port in self.ports])

    def _ping(self, port: int) -> bool:
        try:
            with redis.Redis(host=self.host, port=port, socket_timeout=1.0, socket_connect_timeout=1.0) as node:
                return bool(node.ping())
        except redis.RedisError:
            return False

    def __enter__(self) -> LocalRedisCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
