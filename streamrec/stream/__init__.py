"""The session processor: a Faust app that keeps each session's recent items in Redis."""

from streamrec.stream.worker import build_worker_app, run_worker

__all__ = ["build_worker_app", "run_worker"]
