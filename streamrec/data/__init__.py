"""Datasets: MovieLens loading (``movielens``) and replaying it as a click stream (``replay``)."""

from streamrec.data.movielens import (
    PAD,
    SOURCES,
    DataError,
    Dataset,
    Malformed,
    MovieLens,
    ensure_raw,
    load,
    parse_inter,
    parse_items,
)
from streamrec.data.replay import ReplayConfig, expected_sessions, replay_events

__all__ = [
    "PAD",
    "SOURCES",
    "DataError",
    "Dataset",
    "Malformed",
    "MovieLens",
    "ReplayConfig",
    "ensure_raw",
    "expected_sessions",
    "load",
    "parse_inter",
    "parse_items",
    "replay_events",
]
