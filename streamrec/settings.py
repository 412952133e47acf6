"""One typed settings object, read from ``STREAMREC_*`` environment variables.

Every process (CLI, worker, publisher, benchmarks, tests) builds its settings here, so a
deployment changes behaviour through the environment alone. Nothing is global: callers
pass the ``Settings`` they were given down to what they build.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from streamrec.errors import ConfigError
from streamrec.kafka_security import KafkaAccess
from streamrec.redis_access import is_cluster_url, strip_cluster_mark

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
    # Reaching a Kafka other than the local one (streamrec.kafka_security maps these onto each client)
    kafka_bootstrap_servers: str = ""  # overrides host/port when set: host:port[,host:port...]
    kafka_security_protocol: str = "PLAINTEXT"  # PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL
    kafka_sasl_mechanism: str = "PLAIN"  # PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512
    kafka_username: str = ""
    kafka_password: str = field(default="", repr=False)
    kafka_ssl_cafile: str = ""  # PEM CA bundle of the brokers' certificates; empty: the system's
    redis_host: str = "127.0.0.1"
    redis_port: int = 16379
    redis_url: str = field(default="", repr=False)  # overrides host/port when set, e.g. redis://:secret@redis:6379/0
    redis_cluster: bool = False  # a Redis Cluster (also: a redis+cluster:// or rediss+cluster:// URL); see redis_access

    clicks_topic: str = "streamrec.clicks"
    dead_letter_topic: str = "streamrec.clicks.dlq"
    topic_partitions: int = 6
    topic_replication_factor: int = 1  # of the topics streamrec creates; 3 on a cluster (one local broker: 1)
    compression: str = "lz4"

    app_id: str = "streamrec-sessions"  # Faust app id, also the consumer group
    redis_prefix: str = "streamrec:"
    session_max_len: int = 200
    session_ttl_s: int = 1800  # idle time after which a session expires
    # Event ids a session remembers, to apply the same event published twice once (a redelivery is
    # caught by its offset instead); up to 128 keeps the set in Redis's compact encoding
    session_dedup_ids: int = 100
    cooc_window: int = 3  # co-occurrence counts pair a new item with this many previous ones
    popularity_half_life_s: float = 86400.0  # in event time
    # Memory bounds of the counters (docs/operations.md, "Memory bounds"): the popularity sets keep
    # their most popular items, and an item dropped from them loses its co-occurrence key too
    counter_max_items: int = 200000
    cooc_max_partners: int = 50  # partners kept per co-occurrence key, the strongest
    cooc_ttl_s: int = 604800  # a co-occurrence key not written for this long expires (7 days)
    redis_maxmemory_mb: int = 1024  # the local redis-server's cap (policy noeviction); 0: no cap
    batch_max: int = 1000
    batch_within_s: float = 0.005  # how long a batch may wait to fill; bounds added latency
    session_timeout_s: float = 10.0  # Kafka group session timeout: how fast a dead worker is noticed
    heartbeat_interval_s: float = 1.0
    commit_interval_s: float = 1.0
    # The worker's fetches: the broker answers once fetch_min_bytes are there or fetch_max_wait_ms have
    # passed. 1 byte answers at once (the freshest); 65536 and 10 ms cut the worker's CPU at 1,000
    # events/s by about 60% for about 7 ms more (docs/operations.md, "The knobs that matter").
    fetch_min_bytes: int = 1
    fetch_max_wait_ms: int = 1500

    max_event_bytes: int = 4096
    # The largest record batch the clicks and dead-letter topics take (their max.message.bytes, set at
    # creation), and the producers' max request size and the worker's fetch size per partition to match
    kafka_max_message_bytes: int = 1048576
    dead_letter_payload_bytes: int = 65536  # a dead letter keeps this much of the refused record, flagged if cut
    max_id_len: int = 128
    max_future_skew_s: int = 86400  # timestamps further ahead than this are absurd
    min_timestamp_ms: int = 631152000000  # 1990-01-01: anything older is absurd (or in seconds)

    # streamrec serve
    grpc_host: str = "127.0.0.1"  # 0.0.0.0 to listen on every interface (then configure TLS)
    grpc_port: int = 50051
    metrics_port: int = 9108  # Prometheus /metrics over HTTP; 0 = off
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 where a scraper on another host reads /metrics (Kubernetes, Compose)
    reflection: bool = True  # gRPC server reflection (grpcurl list/describe); off in production configs
    # The model registry (streamrec.registry): the one place every command publishes to and loads from
    # (train, train-ranker, retrain, serve, bench models, live...); their --registry overrides it.
    registry: Path = field(default_factory=lambda: Path.cwd() / "models")
    registry_poll_s: float = 5.0  # how often the CURRENT pointers are checked for a new version
    # Threads that run the pipeline off the event loop; 0 = on it (streamrec.serve.batcher). On it is
    # the default: with one server process per core a process has one thread to schedule, no hand-off
    # per batch and no lock to pass back and forth: p99 8.3 ms at 500 requests/s here, 20.2 ms with one
    # thread (docs/serving-log.md).
    serve_workers: int = 0
    serve_max_batch: int = 32  # concurrent requests run as one pipeline pass; 1 = no batching
    serve_batch_wait_ms: float = 0.0  # how long a request may wait for others to batch with; 0 = never
    # With SERVE_WORKERS=0: how long a batch waits for requests still reading their session from Redis
    # (streamrec.serve.batcher). A request alone never waits: nothing else is on its way.
    serve_batch_gather_ms: float = 1.0
    # Load shedding (streamrec.serve.batcher): past these, a request is refused with RESOURCE_EXHAUSTED
    # at once instead of queueing without end. 64 waiting requests are two full batches: at 0.7 ms of
    # pipeline CPU per request in batches, about 45 ms of one core's work; a longer queue would only
    # turn quick refusals into late ones. The queue timeout is how long any request may wait for the
    # pipeline, whatever its client's deadline (and so none waits forever): a wait that long means the
    # process is over capacity. 100 ms is what a "what next" answer is worth; 50 ms refused requests at
    # saturation with 200-item sessions, where a full batch and the pause after it take about 80 ms.
    serve_max_queue: int = 64  # requests waiting for the pipeline at most, per server process
    serve_queue_timeout_ms: float = 100.0  # longest wait of a request for the pipeline
    # Calls in progress per process past which grpc.aio refuses the next with RESOURCE_EXHAUSTED before
    # any of our code runs (the cheapest refusal; at most MAX_QUEUE + MAX_BATCH). Under a flood a
    # process holds this many, so it sets their wait (Little's law). One full batch (MAX_BATCH): every
    # call let in between two batches goes in the next one, none waits a batch more, and none is
    # refused late, by the queue timeout after its Redis read. At 48, up to 16 calls let in (beyond a batch)
    # could wait for a second batch: p99 lower at 32 in each of 6 pairs of flood runs, e.g. 191 against
    # 249 ms (docs/serving-log.md). 32 in flight at saturation, over two processes, stay under it.
    serve_max_in_flight: int = 32
    # grpc.aio servers per process on the one port (SO_REUSEPORT), sharing its servicer and batcher. grpc.aio
    # takes in one call at a time per server, a few loop turns each; under a flood, calls wait for that in
    # gRPC core, unbounded and unseen. Each listener takes in its own, and holds MAX_IN_FLIGHT / LISTENERS
    # calls in progress: the kernel spreads connections over listeners as over processes, so one connection
    # is held to that share. Two lowered a flood's p99 (median 260 against 314 ms here, 3 pairs of runs) but
    # refused more calls at 500/s on a slow day (60 and 105 of 10,000 against 0 and 18): one by default,
    # two for servers that must ride out floods (docs/serving-log.md).
    serve_listeners: int = 1
    # Requests of one RecommendStream in progress at most; past it the stream is not read (HTTP/2 flow
    # control holds the client). A full batch: one stream alone keeps the batches full.
    serve_stream_window: int = 32
    # Calls that hold a place of MAX_IN_FLIGHT without progress are ended (streamrec.serve.call_guard): a
    # unary call whose request message has not come within READ_TIMEOUT_S (DEADLINE_EXCEEDED); a stream
    # with no request read nor answer written for STREAM_IDLE_S (UNAVAILABLE). Streams past MAX_STREAMS a
    # process are refused (RESOURCE_EXHAUSTED), so they never hold every place: below MAX_IN_FLIGHT /
    # LISTENERS. A connection is closed after MAX_CONNECTION_AGE_S (GOAWAY, then SERVE_GRACE_S for the
    # calls on it; 0: never): the end of a stream whose client stopped reading, and a spread of long-lived
    # clients over replicas.
    serve_read_timeout_s: float = 2.0
    serve_max_streams: int = 8
    serve_stream_idle_s: float = 60.0
    serve_max_connection_age_s: float = 300.0
    serve_fold_ranker: bool = True  # DeepFM's layers folded into per-input tables (same logits, ~3x less CPU)
    # A sequence model published with the session contract (`streamrec train --contract session`) is served
    # through its item index above this many items, by its full scores at or below it (streamrec.retrieval;
    # docs/operations.md, "Catalogue scale", has the measured crossover). -1: never through the index.
    retrieval_threshold: int = 20_000
    serve_max_message_bytes: int = 65536  # larger requests are refused (RESOURCE_EXHAUSTED)
    serve_grace_s: float = 5.0  # in-flight requests get this long to finish on stop
    # A benchmark switch (`bench serve` sets it on a server of its own), never for production: Recommend
    # reads the session from Redis as usual, then answers from popularity instead of running the
    # pipeline, marked cold_start, so the bench can tell the servicer's and Redis's cost from the pipeline's
    serve_skip_pipeline: bool = False
    redis_timeout_s: float = 0.25  # connect and read timeout of the server's Redis calls
    tls_cert: str = ""  # PEM server certificate chain; with tls_key enables TLS
    tls_key: str = ""  # PEM private key
    tls_client_ca: str = ""  # PEM CA bundle: when set, clients must present a certificate it signed (mTLS)

    # streamrec archive: the clicks topic as Parquet by event date, the trainer's input (streamrec.archive)
    archive_dir: Path = field(default_factory=lambda: _default_home() / "archive")
    archive_group_id: str = ""  # the archiver's own consumer group; empty: "<app_id>-archive"
    archive_flush_events: int = 10000  # records per flush at most: bounds memory and what a crash makes Kafka resend
    archive_flush_s: float = 30.0  # a record waits at most this long for its flush, so for the archive
    archive_dedup_ids: int = 2000000  # event ids kept in memory to drop duplicates (about 100 bytes each)

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka_access.bootstrap

    @property
    def kafka_access(self) -> KafkaAccess:
        """Brokers, TLS and SASL; ``streamrec.kafka_security`` turns it into each client's arguments."""
        return KafkaAccess.parse(bootstrap_servers=self.kafka_bootstrap_servers,
                                 default_server=f"{self.kafka_host}:{self.kafka_port}",
                                 protocol=self.kafka_security_protocol, sasl_mechanism=self.kafka_sasl_mechanism,
                                 username=self.kafka_username, password=self.kafka_password,
                                 ssl_cafile=self.kafka_ssl_cafile)

    @property
    def models_channel(self) -> str:
        """The Redis pub/sub channel on which a promotion is announced; servers check the registry at once."""
        return f"{self.redis_prefix}models"

    @property
    def redis_address(self) -> str:
        """The URL of Redis, or of one node of a Redis Cluster (without a ``+cluster`` marker)."""
        return strip_cluster_mark(self.redis_url) or f"redis://{self.redis_host}:{self.redis_port}/0"

    @property
    def serve_listener_places(self) -> int:
        """Calls in progress one grpc.aio listener holds: its share of MAX_IN_FLIGHT, at most MAX_QUEUE +
        MAX_BATCH in all (the server's ``maximum_concurrent_rpcs``)."""
        in_flight = min(self.serve_max_in_flight, self.serve_max_queue + self.serve_max_batch)
        return -(-in_flight // self.serve_listeners)

    @property
    def redis_is_cluster(self) -> bool:
        return self.redis_cluster or is_cluster_url(self.redis_url)

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

    def to_env(self, *, redact: bool = False) -> dict[str, str]:
        """The environment that reproduces these settings in a child process. ``redact`` masks the
        secrets (the Kafka password, a password in the Redis URL) for showing it to people."""
        env = {ENV_PREFIX + f.name.upper(): str(getattr(self, f.name)) for f in fields(self)}
        if redact:
            env[ENV_PREFIX + "KAFKA_PASSWORD"] = "***" if self.kafka_password else ""
            env[ENV_PREFIX + "REDIS_URL"] = _redact_url(self.redis_url)
        return env

    def validate(self) -> None:
        positive = ("topic_partitions", "topic_replication_factor", "session_max_len", "session_ttl_s", "batch_max",
                    "max_event_bytes", "max_id_len", "kafka_port", "redis_port", "counter_max_items", "session_dedup_ids",
                    "cooc_max_partners", "cooc_ttl_s", "fetch_min_bytes")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be positive, got {getattr(self, name)}")
        if self.compression not in ("none", "gzip", "lz4", "zstd", "snappy"):
            raise ConfigError(f"{ENV_PREFIX}COMPRESSION must be one of none, gzip, lz4, zstd, snappy; got {self.compression!r}")
        if not 0 < self.dead_letter_payload_bytes <= (self.kafka_max_message_bytes - 32768) * 3 // 4:
            # base64 (4/3) plus at most 32 KiB of context: a dead letter always fits its topic
            raise ConfigError(f"{ENV_PREFIX}DEAD_LETTER_PAYLOAD_BYTES must be positive and at most "
                              f"3/4 of {ENV_PREFIX}KAFKA_MAX_MESSAGE_BYTES less 32 KiB, got "
                              f"{self.dead_letter_payload_bytes} and {self.kafka_max_message_bytes}")
        if self.redis_maxmemory_mb < 0:
            raise ConfigError(f"{ENV_PREFIX}REDIS_MAXMEMORY_MB must be >= 0 (0: no cap), got {self.redis_maxmemory_mb}")
        if self.fetch_max_wait_ms < 0:
            raise ConfigError(f"{ENV_PREFIX}FETCH_MAX_WAIT_MS must be >= 0, got {self.fetch_max_wait_ms}")
        if self.popularity_half_life_s <= 0 or self.batch_within_s < 0:
            raise ConfigError("popularity half-life must be positive and batch window non-negative")
        if self.serve_max_message_bytes <= 0 or self.serve_workers < 0:
            raise ConfigError(f"{ENV_PREFIX}SERVE_MAX_MESSAGE_BYTES must be positive and {ENV_PREFIX}SERVE_WORKERS "
                              "non-negative (0 runs the pipeline on the event loop)")
        if self.serve_max_batch < 1 or self.serve_batch_wait_ms < 0 or self.serve_batch_gather_ms < 0:
            raise ConfigError(f"{ENV_PREFIX}SERVE_MAX_BATCH must be >= 1 (1: no batching) and "
                              f"{ENV_PREFIX}SERVE_BATCH_WAIT_MS and _GATHER_MS >= 0, got {self.serve_max_batch}, "
                              f"{self.serve_batch_wait_ms} and {self.serve_batch_gather_ms}")
        if self.serve_max_queue < 1 or not self.serve_queue_timeout_ms > 0 or self.serve_max_in_flight < 1:
            raise ConfigError(f"{ENV_PREFIX}SERVE_MAX_QUEUE and {ENV_PREFIX}SERVE_MAX_IN_FLIGHT must be >= 1 and "
                              f"{ENV_PREFIX}SERVE_QUEUE_TIMEOUT_MS positive (requests beyond them are refused, so "
                              f"none waits forever), got {self.serve_max_queue}, {self.serve_max_in_flight} and "
                              f"{self.serve_queue_timeout_ms}")
        if not 1 <= self.serve_listeners <= 8 or self.serve_listeners > self.serve_max_in_flight:
            raise ConfigError(f"{ENV_PREFIX}SERVE_LISTENERS must be 1 to 8 and at most {ENV_PREFIX}SERVE_MAX_IN_FLIGHT "
                              f"(each listener holds a share of it), got {self.serve_listeners}")
        if self.serve_stream_window < 1:
            raise ConfigError(f"{ENV_PREFIX}SERVE_STREAM_WINDOW must be >= 1 (requests of one stream in progress), "
                              f"got {self.serve_stream_window}")
        places = self.serve_listener_places
        if not 0 <= self.serve_max_streams < places:
            raise ConfigError(f"{ENV_PREFIX}SERVE_MAX_STREAMS must be >= 0 and below the calls in progress a listener "
                              f"holds ({places}: {ENV_PREFIX}SERVE_MAX_IN_FLIGHT / _LISTENERS), so streams never "
                              f"hold them all; got {self.serve_max_streams}")
        if self.serve_max_connection_age_s < 0:
            raise ConfigError(f"{ENV_PREFIX}SERVE_MAX_CONNECTION_AGE_S must be >= 0 (0: never), "
                              f"got {self.serve_max_connection_age_s}")
        if self.retrieval_threshold < -1:
            raise ConfigError(f"{ENV_PREFIX}RETRIEVAL_THRESHOLD must be >= 0 (items), or -1 (never through the "
                              f"index), got {self.retrieval_threshold}")
        for name in ("registry_poll_s", "serve_grace_s", "redis_timeout_s", "serve_read_timeout_s",
                     "serve_stream_idle_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{ENV_PREFIX}{name.upper()} must be positive, got {getattr(self, name)}")
        if not 0 <= self.grpc_port < 65536 or not 0 <= self.metrics_port < 65536:
            raise ConfigError(f"{ENV_PREFIX}GRPC_PORT (0: any free port) and {ENV_PREFIX}METRICS_PORT (0: off) must "
                              f"be ports, got {self.grpc_port} and {self.metrics_port}")
        if bool(self.tls_cert) != bool(self.tls_key) or (self.tls_client_ca and not self.tls_cert):
            raise ConfigError(f"TLS needs both {ENV_PREFIX}TLS_CERT and {ENV_PREFIX}TLS_KEY "
                              f"({ENV_PREFIX}TLS_CLIENT_CA only on top of them)")
        _ = self.kafka_access  # built to be checked: ConfigError for a bad Kafka address, TLS or SASL setting


def _redact_url(url: str) -> str:
    """``redis://user:secret@host`` as ``redis://user:***@host``."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}"


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


def add_registry_option(parser: argparse.ArgumentParser,
                        help: str = "model registry (default STREAMREC_REGISTRY, ./models)") -> None:
    """``--registry DIR``, the one command-line override of ``Settings.registry``: ``streamrec.cli``
    applies it to the settings before a handler runs, so every command reads the registry from the
    settings and none keeps a default of its own."""
    parser.add_argument("--registry", metavar="DIR", type=Path, default=None, help=help)
