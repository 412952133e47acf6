"""The package's exception hierarchy. Messages say what to do next."""

from __future__ import annotations

__all__ = ["StreamrecError", "ArchiveError", "ConfigError", "InfraError", "InvalidEvent", "DataError"]


class StreamrecError(Exception):
    """Base class of every error streamrec raises on purpose."""


class ConfigError(StreamrecError, ValueError):
    """A setting or option has a value that cannot work."""


class InfraError(StreamrecError):
    """Local infrastructure (Kafka, Redis) could not be installed, started or reached."""


class InvalidEvent(StreamrecError, ValueError):
    """An event failed validation. ``reason`` is a stable code; the message explains it."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class DataError(StreamrecError):
    """A dataset could not be fetched or is unusable as a whole."""


class ArchiveError(StreamrecError):
    """The event archive cannot be written or read as asked (another archiver holds it, a file is unreadable)."""
