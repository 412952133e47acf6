"""A real Apache Kafka 4.x broker in KRaft mode, combined broker and controller, on loopback.

The jars are resolved from Maven Central by ``mvn`` (``deploy/kafka/pom.xml``) into a cache
that later runs reuse, and the broker runs as ``java kafka.Kafka``: no distribution tarball,
no docker.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

from streamrec.errors import InfraError
from streamrec.infra.processes import OwnedProcess, port_open, require_free_port, wait_until
from streamrec.settings import Settings

__all__ = ["KafkaBroker", "broker_properties", "cluster_id", "deploy_dir"]


def deploy_dir() -> Path:
    """The repository's ``deploy/`` folder (the package is installed in editable mode)."""
    path = Path(os.environ.get("STREAMREC_DEPLOY_DIR", Path(__file__).resolve().parents[2] / "deploy"))
    if not (path / "kafka" / "pom.xml").is_file():
        raise InfraError(f"{path}/kafka/pom.xml not found. Run from a checkout, or set STREAMREC_DEPLOY_DIR.")
    return path


def broker_properties(settings: Settings, log_dir: Path) -> str:
    """server.properties for a single-node KRaft cluster; pure, so tests can read it."""
    s = settings
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.voters": f"1@{s.kafka_host}:{s.kafka_controller_port}",
        "listeners": f"PLAINTEXT://{s.kafka_host}:{s.kafka_port},CONTROLLER://{s.kafka_host}:{s.kafka_controller_port}",
        "advertised.listeners": f"PLAINTEXT://{s.kafka_host}:{s.kafka_port}",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "inter.broker.listener.name": "PLAINTEXT",
        "log.dirs": str(log_dir),
        "num.partitions": str(s.topic_partitions),
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "6",  # the default 50 slows the first group join on 2 cores
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        "auto.create.topics.enable": "true",
        "log.retention.hours": "168",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


def cluster_id() -> str:
    """A random KRaft cluster id: a UUID in URL-safe base64, as Kafka's ``Uuid.randomUuid`` makes one, and
    like it never starting with "-", which the storage tool's argument parser would read as an option
    (one id in 64 did, and ``infra up`` then failed on a fresh clone)."""
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True)
class KafkaBroker:
    settings: Settings

    @property
    def process(self) -> OwnedProcess:
        return OwnedProcess.under(self.settings.home, "kafka")

    @property
    def libs(self) -> Path:
        return self.settings.cache_dir / f"kafka-{self.settings.kafka_version}" / "libs"

    @property
    def address(self) -> str:
        # the broker `infra up` runs: always its own PLAINTEXT listener, whatever remote Kafka is configured
        return f"{self.settings.kafka_host}:{self.settings.kafka_port}"

    def resolve_jars(self) -> Path:
        """Copy the broker's runtime classpath from Maven Central into the cache (once)."""
        marker = self.libs / ".complete"
        if marker.exists():
            return self.libs
        mvn = shutil.which("mvn")
        if mvn is None:
            raise InfraError("Maven (mvn) is not installed. Install it with: apt-get install -y maven")
        self.libs.mkdir(parents=True, exist_ok=True)
        argv = [
            mvn, "-B", "-q", "-f", str(deploy_dir() / "kafka" / "pom.xml"),
            f"-Dmaven.repo.local={self.settings.cache_dir / 'm2'}",
            f"-Dkafka.version={self.settings.kafka_version}",
            "dependency:copy-dependencies", f"-DoutputDirectory={self.libs}", "-DincludeScope=runtime",
        ]
        result = subprocess.run(argv, capture_output=True, text=True)
        if result.returncode != 0 or not any(self.libs.glob("kafka_2.13-*.jar")):
            tail = (result.stdout + result.stderr)[-2000:]
            raise InfraError(f"mvn could not resolve org.apache.kafka:kafka_2.13:{self.settings.kafka_version}:\n{tail}")
        marker.touch()
        return self.libs

    def _java(self, *args: str) -> list[str]:
        java = shutil.which("java", path=str(Path(os.environ["JAVA_HOME"]) / "bin")) if os.environ.get("JAVA_HOME") else None
        java = java or shutil.which("java")
        if java is None:
            raise InfraError("java is not installed. Kafka 4 needs Java 17 or newer: apt-get install -y openjdk-17-jre-headless")
        return [java, "-cp", f"{self.libs}/*", *args]

    def _configure(self) -> Path:
        """Write server.properties and format the KRaft storage the first time."""
        base = self.settings.home / "kafka"
        data = base / "data"
        config = base / "server.properties"
        base.mkdir(parents=True, exist_ok=True)
        config.write_text(broker_properties(self.settings, data))
        if not (data / "meta.properties").exists():
            cid = cluster_id()
            result = subprocess.run(
                self._java("kafka.tools.StorageTool", "format", "-t", cid, "-c", str(config)),
                capture_output=True, text=True,
            )
            if result.returncode != 0:
                raise InfraError(f"formatting Kafka storage failed:\n{(result.stdout + result.stderr)[-2000:]}")
        return config

    def healthy(self) -> bool:
        """The broker answers a metadata request and reports itself as a live broker."""
        if not port_open(self.settings.kafka_host, self.settings.kafka_port):
            return False
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.address, request_timeout_ms=3000,
                                     client_id="streamrec-health")
        except (KafkaError, OSError, ValueError):
            return False
        try:
            return bool(admin.describe_cluster().get("brokers"))
        except (KafkaError, OSError, ValueError):
            return False
        finally:
            admin.close()

    def start(self, timeout_s: float = 90.0) -> bool:
        """Start unless already running; returns True if this call started it."""
        if self.process.pid() is not None:
            self._wait(timeout_s)
            return False
        s = self.settings
        require_free_port("Kafka", s.kafka_host, s.kafka_port, "STREAMREC_KAFKA_PORT")
        require_free_port("Kafka controller", s.kafka_host, s.kafka_controller_port, "STREAMREC_KAFKA_CONTROLLER_PORT")
        self.resolve_jars()
        config = self._configure()
        argv = self._java("kafka.Kafka", str(config))
        argv[1:1] = [
            f"-Xmx{s.kafka_heap}", f"-Xms{s.kafka_heap}", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20",
            "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={deploy_dir() / 'kafka' / 'log4j2.properties'}",
        ]
        self.process.start(argv)
        self._wait(timeout_s)
        return True

    def _wait(self, timeout_s: float) -> None:
        def ready() -> bool:
            if self.process.pid() is None:
                raise InfraError(f"the Kafka broker exited during start-up. Log tail:\n{self.process.log_tail()}")
            return self.healthy()

        if not wait_until(ready, timeout_s, interval_s=0.5):
            raise InfraError(f"Kafka did not become healthy within {timeout_s:.0f}s. Log tail:\n{self.process.log_tail()}")

    def stop(self) -> bool:
        return self.process.stop(timeout_s=60.0)
