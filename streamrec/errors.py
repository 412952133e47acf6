"""The package's exception hierarchy. Messages say what to do next.

Everything streamrec raises on purpose derives from ``StreamrecError``, so the CLI catches one
class and prints its message as one line. Errors about a bad value also derive from ``ValueError``
(``ConfigError``, ``InvalidEvent``, ``InvalidRequest``), so callers that only know the standard
library still catch them.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "ArchiveError",
    "ArtifactError",
    "ConfigError",
    "DataError",
    "InfraError",
    "InvalidEvent",
    "InvalidRequest",
    "LoadError",
    "Overloaded",
    "PeerError",
    "RedisRolledBack",
    "RedisUnavailable",
    "StreamrecError",
]


class StreamrecError(Exception):
    """Base class of every error streamrec raises on purpose."""


class ConfigError(StreamrecError, ValueError):
    """A setting, option or config field has a value that cannot work: raised before any work starts."""


class InfraError(StreamrecError):
    """Local infrastructure (Kafka, Redis) could not be installed, started or reached."""


class RedisUnavailable(InfraError):
    """Redis did not answer a server's call in time; the request is answered without it (degraded)."""


class RedisRolledBack(InfraError):
    """Redis holds an older applied offset than this worker wrote there: it lost acknowledged writes
    (a crash between two fsyncs of its append-only file). The worker stops so that, restarted, it
    re-reads the partition from the offset Redis kept (``streamrec.stream.resume``)."""


class InvalidEvent(StreamrecError, ValueError):
    """An event failed validation. ``reason`` is a stable code; the message explains it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class InvalidRequest(StreamrecError, ValueError):
    """A gRPC request breaks a rule (``streamrec.serve.validation``); the server answers INVALID_ARGUMENT
    with the message, which says which rule and how to fix it."""


class DataError(StreamrecError):
    """A dataset could not be fetched or is unusable as a whole."""


class ArchiveError(StreamrecError):
    """The event archive cannot be written or read as asked (another archiver holds it, a file is unreadable)."""


class ArtifactError(StreamrecError):
    """A model artifact in the registry is missing, incomplete or does not match its manifest (a bad
    name, pointer or sha256 included)."""


class Overloaded(StreamrecError):
    """The server refused a request it could not serve in time (load shedding): its queue was full, or
    the request waited past the server's queue timeout, or its event loop was too busy to read a Redis
    answer in time. The server answers RESOURCE_EXHAUSTED with the message; the client should retry
    with backoff. ``reason`` is a stable code (``queue_full``, ``queue_timeout``, ``busy``), the label
    of ``streamrec_shed_requests_total``."""

    def __init__(self, reason: Literal["queue_full", "queue_timeout", "busy"], detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class LoadError(StreamrecError):
    """A model version could not be loaded into a serving state or failed a check there; the server
    keeps what it serves."""


class PeerError(StreamrecError):
    """The peer benchmark's other side (its virtual environment or its run) failed; the message says where to look."""
