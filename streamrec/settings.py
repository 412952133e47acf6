"""One typed settings object, read from ``STREAMREC_*`` environment variables.

Every process (CLI, worker, publisher, benchmarks, tests) builds its settings here, so a
deployment changes behaviour through the environment alone. Nothing is global: callers
pass the ``Settings`` they were given down to what they build.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from streamrec.errors import ConfigError

__all__ = ["Settings", "ENV_PREFIX"]

ENV_PREFIX = "STREAMREC_"


def _default_home() -> Path:
    return Path(os.environ.get("STREAMREC_HOME", Path.cwd() / "var"))


@dataclass(frozen=True)
class Settings:
    """Runtime settings. Each field ``x`` is read from ``STREAMREC_X``."""

    home: Path = field(default_factory=_default_home)  # state of local infra: logs, pids, data dirs
    cache_dir: Path = field(default_factory=lambda: Path.cwd() / ".cache")  # Kafka jars, wheels
    data_dir: Path = field(default_factory=lambda: Path.cwd() / "data")

    kafka_host: str = "127.0.0.1"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    kafka_version: str = "4.1.1"
    kafka_heap: str = "768m"
    redis_host: str = "127.0.0.1"
    redis_port: int = 16379
    redis_url: str = ""  # overrides host/port when set, e.g. redis://:secret@redis:6379/0

    clicks_topic: str = "streamrec.clicks"
    dead_letter_topic: str = "streamrec.clicks.dlq"
    topic_partitions: int = 6
    compression: str = "lz4"

    app_id: str = "streamrec-sessions"  # Faust app id, also the consumer group
    redis_prefix: str = "streamrec:"
    session_max_len: int = 200
    session_ttl_s: int = 1800  # idle time after which a session expires
    cooc_window: int = 3  # co-occurrence counts pair a new item with this many previous ones
    popularity_half_life_s: float = 86400.0  # in event time
    batch_max: int = 1000
    batch_within_s: float = 0.005  # how long a batch may wait to fill; bounds added latency
    session_timeout_s: float = 10.0  # Kafka group session timeout: how fast a dead worker is noticed
    heartbeat_interval_s: float = 1.0
    commit_interval_s: float = 1.0

    max_event_bytes: int = 4096
    max_id_len: int = 128
    max_future_skew_s: int = 86400  # timestamps further ahead than this are absurd
    min_timestamp_ms: int = 631152000000  # 1990-01-01: anything older is absurd (or in seconds)

    # streamrec serve
    grpc_host: str = "127.0.0.1"  # 0.0.0.0 to listen on every interface (then configure TLS)
    grpc_port: int = 50051
    metrics_port: int = 9108  # Prometheus /metrics over HTTP; 0 = off
    registry: Path = field(default_factory=lambda: Path.cwd() / "models")  # the model registry served
    registry_poll_s: float = 5.0  # how often the CURRENT pointers are checked for a new version
    serve_workers: int = 2  # threads that run the pipeline off the event loop; 0 = on it
    serve_max_message_bytes: int = 65536  # larger requests are refused (RESOURCE_EXHAUSTED)
    serve_grace_s: float = 5.0  # in-flight requests get this long to finish on stop
    redis_timeout_s: float = 0.25  # connect and read timeout of the server's Redis calls
    tls_cert: str = ""  # PEM server certificate chain; with tls_key enables TLS
    tls_key: str = ""  # PEM private key
    tls_client_ca: str = ""  # PEM CA bundle: when set, clients must present a certificate it signed (mTLS)

    @property
    def kafka_bootstrap(self) -> str:
        return f"{self.kafka_host}:{self.kafka_port}"

    @property
    def redis_address(self) -> str:
        return self.redis_url or f"redis://{self.redis_host}:{self.redis_port}/0"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Build settings from ``env`` (default ``os.environ``); ``overrides`` win over both."""
        env = os.environ if env is None else env
        hints = get_type_hints(cls)
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None:
                values[f.name] = _convert(f.name, raw, hints[f.name])
        values.update(overrides)
        settings = cls(**values)
        settings.validate()
        return settings

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_env(self) -> dict[str, str]:
        """The environment that reproduces these settings in a child process."""
        return {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}

    def validate(self) -> None:
        positive = ("topic_partitions", "session_max_len", "session_ttl_s", "batch_max",
                    "max_event_bytes", "max_id_len", "kafka_port", "redis_port")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be positive, got {getattr(self, name)}")
        if self.compression not in ("none", "gzip", "lz4", "zstd", "snappy"):
            raise ConfigError(f"{ENV_PREFIX}COMPRESSION must be one of none, gzip, lz4, zstd, snappy; got {self.compression!r}")
        if self.popularity_half_life_s <= 0 or self.batch_within_s < 0:
            raise ConfigError("popularity half-life must be positive and batch window non-negative")
        if self.serve_max_message_bytes <= 0 or self.serve_workers < 0:
            raise ConfigError(f"{ENV_PREFIX}SERVE_MAX_MESSAGE_BYTES must be positive and {ENV_PREFIX}SERVE_WORKERS "
                              "non-negative (0 runs the pipeline on the event loop)")
        for name in ("registry_poll_s", "serve_grace_s", "redis_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be positive, got {getattr(self, name)}")
        if not 0 <= self.grpc_port < 65536 or not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"{ENV_PREFIX}GRPC_PORT (0: any free port) and {ENV_PREFIX}METRICS_PORT (0: off) must "
                              f"be ports, got {self.grpc_port} and {self.metrics_port}")
        if bool(self.tls_cert) != bool(self.tls_key) or (self.tls_client_ca and not self.tls_cert):
            raise ConfigError(f"TLS needs both {ENV_PREFIX}TLS_CERT and {ENV_PREFIX}TLS_KEY "
                              f"({ENV_PREFIX}TLS_CLIENT_CA only on top of them)")


def _convert(name: str, raw: str, kind: Any) -> Any:
    try:
        if kind is bool:
            if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(raw)
            return raw.lower() in ("1", "true", "yes")
        if kind is Path:
            return Path(raw)
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {getattr(kind, '__name__', kind)}") from None
