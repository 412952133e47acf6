"""The bookkeeping of ``streamrec live``, free of I/O: which sessions to replay, in what order, and the score.

A live run replays held-out test sessions click by click. After click ``p`` of a session the
server is asked for its top ``k``, and the answer is judged by click ``p + 1``, the one the
user really made next; the last click of a session has nothing to judge it by, so it is not
replayed. This is the offline session protocol (next item from the prefix, full catalogue)
measured through the real stack: Kafka, the worker, Redis and the gRPC server.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from streamrec.errors import ConfigError
from streamrec.eval.protocols import Cases
from streamrec.stats import percentile

__all__ = ["LiveSession", "Scoreboard", "Step", "StepResult", "choose_sessions", "interleave", "sessions_of",
           "step_event"]


@dataclass(frozen=True)
class LiveSession:
    """One test session as it will be replayed: its items in the order they were clicked."""

    session_id: str
    user_id: str
    items: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    """Replay click ``position`` of ``session``, then predict click ``position + 1``."""

    session: LiveSession
    position: int

    @property
    def clicked(self) -> str:
        return self.session.items[self.position]

    @property
    def next_item(self) -> str:
        return self.session.items[self.position + 1]


@dataclass(frozen=True)
class StepResult:
    step: Step
    recommended: tuple[str, ...]  # best first
    latency_ms: float  # the Recommend call, as the client saw it
    apply_ms: float  # from publishing the click to seeing it in Redis: Kafka and the worker
    model_versions: Mapping[str, str] = field(default_factory=dict)
    degraded: bool = False  # the server answered from a fallback

    @property
    def rank(self) -> int | None:
        """1-based rank of the next click in the answer; None when it is not in it."""
        try:
            return self.recommended.index(self.step.next_item) + 1
        except ValueError:
            return None

    @property
    def hit(self) -> bool:
        return self.rank is not None


def sessions_of(cases: Cases, vocab: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
    """Whole sessions back from the session protocol's cases, as ``(user, item ids)``.

    The protocol turns a session ``s`` into the consecutive cases ``s[:t] -> s[t]`` for
    ``t = 1 .. len(s) - 1``, so a history of length 1 starts a session and the case before the
    next such start holds all of it. That needs every case kept, which holds unless cases whose
    target is in their history were dropped.
    """
    if cases.exclude_history:
        raise ValueError("sessions cannot be rebuilt from cases that dropped targets found in their history")
    ends = [i - 1 for i in range(1, len(cases)) if len(cases.histories[i]) == 1] + [len(cases) - 1]
    sessions = []
    for end in ends if len(cases) else []:
        idx = np.append(cases.histories[end], cases.targets[end])
        sessions.append((str(cases.users[end]), tuple(vocab[i] for i in idx)))
    return sessions


def choose_sessions(sessions: Sequence[tuple[str, tuple[str, ...]]], n: int, *, run_id: str,
                    seed: int = 0, min_clicks: int = 3, max_clicks: int = 20) -> list[LiveSession]:
    """``n`` sessions drawn at random among those with at least ``min_clicks`` clicks, each cut to its
    first ``max_clicks``, kept in the order given.

    A random draw rather than the first ``n``: the protocol lists sessions user by user, so the
    first ``n`` would come from a few users. Each gets a fresh id carrying ``run_id``, so a second
    run starts from empty sessions in Redis instead of appending to the first run's.
    """
    if n < 1 or min_clicks < 2 or max_clicks < min_clicks:
        raise ConfigError(f"need n >= 1 and 2 <= min_clicks <= max_clicks; got {n}, {min_clicks}, {max_clicks}")
    eligible = [i for i, (_, items) in enumerate(sessions) if len(items) >= min_clicks]
    chosen = sorted(random.Random(seed).sample(eligible, min(n, len(eligible))))
    live = []
    for number, i in enumerate(chosen):
        user, items = sessions[i]
        live.append(LiveSession(f"live-{run_id}-{number}-u{user}", user, items[:max_clicks]))
    return live


def interleave(sessions: Sequence[LiveSession]) -> Iterator[Step]:
    """Round robin over the sessions, a click of each in turn, as concurrent users would be; a
    session's last click is left out (nothing follows it to judge a prediction by)."""
    position = 0
    while True:
        steps = [Step(s, position) for s in sessions if position < len(s.items) - 1]
        if not steps:
            return
        yield from steps
        position += 1


def step_event(step: Step, now_ms: int) -> dict[str, Any]:
    """The wire event of a step's click (``streamrec.events.schema``); its id is unique per session and click.

    It is stamped ``now_ms``, when it is replayed, not when the rating was made: the server
    measures a session's recency against its own clock, and an event from 2003 would look
    decades old to it. Replaying in order keeps the session's order.
    """
    session = step.session
    return {"event_id": f"{session.session_id}-{step.position}", "session_id": session.session_id,
            "user_id": session.user_id, "item_id": step.clicked, "event_type": "click", "timestamp": now_ms}


@dataclass
class Scoreboard:
    """Running HR@k and latencies, plus the latest results for a view."""

    k: int
    keep: int = 8  # how many recent results a view shows
    hits: int = 0
    predictions: int = 0
    degraded: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    apply_ms: list[float] = field(default_factory=list)
    recent: deque[StepResult] = field(init=False)

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=self.keep)

    def record(self, result: StepResult) -> None:
        self.predictions += 1
        self.hits += result.hit
        self.degraded += result.degraded
        self.latencies_ms.append(result.latency_ms)
        self.apply_ms.append(result.apply_ms)
        self.recent.appendleft(result)

    @property
    def hit_rate(self) -> float:
        return self.hits / self.predictions if self.predictions else 0.0

    def summary(self) -> dict[str, Any]:
        return {
            "k": self.k,
            "predictions": self.predictions,
            "hits": self.hits,
            "degraded": self.degraded,
            f"hr@{self.k}": round(self.hit_rate, 4),
            "latency_p50_ms": _ms(self.latencies_ms, 50),
            "latency_p99_ms": _ms(self.latencies_ms, 99),
            "apply_p50_ms": _ms(self.apply_ms, 50),
            "apply_p99_ms": _ms(self.apply_ms, 99),
        }


def _ms(values: Sequence[float], q: float) -> float:
    """A percentile for the scoreboard, 0.0 before the first measurement so that a view can always format it."""
    p = percentile(values, q)
    return 0.0 if p is None else round(p, 2)
