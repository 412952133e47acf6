"""Replay a MovieLens interactions table as a click stream, for ``streamrec publish``.

MovieLens has ratings, not sessions or clicks, so two things are synthesised here, both
deterministically (a replay published twice carries the same ids, and the stream worker
de-duplicates by ``event_id``):

* sessions: a user's timeline is cut wherever they were inactive for more than
  ``ReplayConfig.session_gap_s``; ``session_id`` is ``"{dataset}-u{user_id}-s{k}"`` with ``k``
  counting that user's sessions from 0;
* event types: from the rating (see ``ReplayConfig``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from streamrec.errors import ConfigError

__all__ = ["ReplayConfig", "expected_sessions", "replay_events"]

_DEFAULT_EVENT_TYPES: Mapping[int, str] = MappingProxyType(
    {1: "view", 2: "view", 3: "click", 4: "add_to_cart", 5: "purchase"}
)


@dataclass(frozen=True)
class ReplayConfig:
    """How ratings become events.

    ``event_types_by_rating`` is a synthetic mapping, chosen so that stronger preference looks
    like a deeper funnel step: 1-2 -> "view", 3 -> "click", 4 -> "add_to_cart", 5 -> "purchase".
    ``session_gap_s``: a gap strictly longer than this (in seconds) starts a new session.
    """

    session_gap_s: int = 3600
    event_types_by_rating: Mapping[int, str] = field(default_factory=lambda: _DEFAULT_EVENT_TYPES, hash=False)

    def __post_init__(self) -> None:
        if self.session_gap_s < 0:
            raise ConfigError(f"session_gap_s must be >= 0, got {self.session_gap_s}")


def replay_events(
    interactions: pd.DataFrame,
    config: ReplayConfig = ReplayConfig(),
    *,
    limit: int | None = None,
    dataset: str = "ml-1m",
) -> Iterator[dict[str, Any]]:
    """Yield the first ``limit`` (default: all) events in timestamp order, ties in row order.

    Each event is ``{"event_id", "session_id", "user_id", "item_id", "event_type", "timestamp"}``
    with ``timestamp`` in milliseconds and ``event_id = f"{dataset}-{row}"``, ``row`` being the
    event's 0-based position in ``interactions``. Sessions are computed with vectorised pandas
    before the first event; a bad input raises here, not at the first ``next()``.
    """
    missing = {"user_id", "item_id", "rating", "timestamp"} - set(interactions.columns)
    if missing:
        raise ValueError(f"interactions lack the column(s) {', '.join(sorted(missing))}")
    if limit is not None and limit < 0:
        raise ConfigError(f"limit must be >= 0, got {limit}")
    order = np.argsort(interactions["timestamp"].to_numpy(), kind="stable")[:limit]
    # A user's sessions depend only on their earlier events, so cutting at `limit` first is exact.
    frame = interactions.iloc[order]
    ts = frame["timestamp"].to_numpy(dtype=np.int64)
    users = pd.factorize(frame["user_id"])[0]
    gaps = pd.Series(ts).groupby(users, sort=False).diff()
    starts = (gaps.isna() | (gaps > config.session_gap_s)).astype(np.int64)
    session_k = starts.groupby(users, sort=False).cumsum() - 1
    event_types = frame["rating"].map(dict(config.event_types_by_rating))
    if event_types.isna().any():
        unmapped = sorted(frame["rating"][event_types.isna()].unique().tolist())
        raise ValueError(f"ratings {unmapped} have no event type in ReplayConfig.event_types_by_rating")
    return _emit(
        dataset,
        order.tolist(),
        frame["user_id"].astype(str).tolist(),
        frame["item_id"].astype(str).tolist(),
        event_types.tolist(),
        (ts * 1000).tolist(),
        session_k.tolist(),
    )


def _emit(dataset: str, *columns: list[Any]) -> Iterator[dict[str, Any]]:
    for row, user, item, event_type, ts_ms, k in zip(*columns, strict=True):
        yield {
            "event_id": f"{dataset}-{row}",
            "session_id": f"{dataset}-u{user}-s{k}",
            "user_id": user,
            "item_id": item,
            "event_type": event_type,
            "timestamp": ts_ms,
        }


def expected_sessions(events: Iterable[Mapping[str, Any]], max_len: int) -> dict[str, list[str]]:
    """Each session's last ``max_len`` item ids ordered by (timestamp, input order): the state a
    correct stream worker ends with. Like the worker, a repeated ``event_id`` counts once (the
    first copy wins). Sessions appear in order of their first event in ``events``."""
    if max_len < 1:
        raise ConfigError(f"max_len must be >= 1, got {max_len}")
    seen: set[str] = set()
    by_session: dict[str, list[tuple[int, int, str]]] = {}
    for pos, event in enumerate(events):
        if event["event_id"] in seen:
            continue
        seen.add(event["event_id"])
        by_session.setdefault(event["session_id"], []).append((event["timestamp"], pos, event["item_id"]))
    return {sid: [item for _, _, item in sorted(rows)[-max_len:]] for sid, rows in by_session.items()}
