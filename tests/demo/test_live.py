"""The pure bookkeeping of ``streamrec live``: rebuilding, drawing and ordering sessions, and scoring."""

from __future__ import annotations

import pandas as pd
import pytest

from streamrec.data.base import build
from streamrec.demo.live import (
    LiveSession,
    Scoreboard,
    Step,
    StepResult,
    choose_sessions,
    interleave,
    sessions_of,
    step_event,
)
from streamrec.errors import ConfigError
from streamrec.eval.protocols import SessionSplit, session_split
from streamrec.events.schema import encode_event, parse_event

DAY = 86_400
ITEMS = pd.DataFrame({"item_id": [str(i) for i in range(1, 7)], "title": [f"t{i}" for i in range(1, 7)],
                      "genres": ["Drama"] * 6})


def result(session: LiveSession, position: int, recommended: tuple[str, ...], latency_ms: float = 1.0,
           degraded: bool = False) -> StepResult:
    return StepResult(Step(session, position), recommended, latency_ms, 2.0, {"deepfm": "v1"}, degraded)


def tiny_log() -> pd.DataFrame:
    """Training sessions early on, then three test sessions in the last ten days (one of a single click)."""
    rows = [("a", i, 1000 + 60 * n) for n, i in enumerate(["1", "2", "3", "4", "5", "6"])]
    rows += [("b", i, 2000 + 60 * n) for n, i in enumerate(["6", "5", "4", "3", "2", "1"])]
    late = 100 * DAY
    rows += [("c", i, late + 60 * n) for n, i in enumerate(["2", "4", "6", "1"])]
    rows += [("d", i, late + DAY + 60 * n) for n, i in enumerate(["3", "5"])]
    rows += [("e", "1", late + 2 * DAY)]
    rows += [("a", i, late + 3 * DAY + 60 * n) for n, i in enumerate(["5", "1", "3"])]
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).sort_values("timestamp", kind="stable")
    return inter.assign(rating=4)


def test_sessions_come_back_whole_from_the_protocols_cases() -> None:
    inter = tiny_log()
    data = build(inter, ITEMS)
    parts = session_split(data, SessionSplit(test_days=10, validation_days=1))
    sessions = sessions_of(parts.test, data.vocab)
    assert sessions == [("a", ("5", "1", "3")), ("c", ("2", "4", "6", "1")), ("d", ("3", "5"))]  # user by user
    assert len(parts.test) == sum(len(items) - 1 for _, items in sessions)


def test_sessions_cannot_be_rebuilt_once_cases_were_dropped() -> None:
    data = build(tiny_log(), ITEMS)
    parts = session_split(data, SessionSplit(test_days=10, validation_days=1, exclude_history=True))
    with pytest.raises(ValueError, match="cannot be rebuilt"):
        sessions_of(parts.test, data.vocab)


def test_choosing_draws_long_enough_sessions_reproducibly_cut_and_renamed() -> None:
    sessions = [(f"u{i}", tuple(str(j) for j in range(i % 7 + 1))) for i in range(50)]
    first = choose_sessions(sessions, 5, run_id="r1", seed=3, min_clicks=3, max_clicks=4)
    again = choose_sessions(sessions, 5, run_id="r2", seed=3, min_clicks=3, max_clicks=4)
    assert [s.user_id for s in first] == [s.user_id for s in again]  # same draw, fresh ids
    assert {s.session_id for s in first}.isdisjoint(s.session_id for s in again)
    assert all(3 <= len(s.items) <= 4 and s.session_id.startswith("live-r1-") for s in first)
    assert [int(s.user_id[1:]) for s in first] == sorted(int(s.user_id[1:]) for s in first)  # the given order
    assert choose_sessions(sessions, 5, run_id="x", seed=4, min_clicks=3) != first
    assert len(choose_sessions(sessions, 500, run_id="x", min_clicks=7)) == 7  # only 7 have 7 clicks
    with pytest.raises(ConfigError):
        choose_sessions(sessions, 5, run_id="x", min_clicks=1)


def test_interleave_goes_round_robin_and_leaves_out_each_last_click() -> None:
    a, b = LiveSession("a", "u1", ("1", "2", "3", "4")), LiveSession("b", "u2", ("5", "6"))
    steps = list(interleave([a, b]))
    assert [(s.session.session_id, s.position) for s in steps] == [("a", 0), ("b", 0), ("a", 1), ("a", 2)]
    assert [(s.clicked, s.next_item) for s in steps] == [("1", "2"), ("5", "6"), ("2", "3"), ("3", "4")]
    assert list(interleave([])) == []


def test_a_steps_event_is_valid_on_the_wire_and_unique_per_click() -> None:
    session = LiveSession("live-r1-0-u7", "7", ("10", "20"))
    event = step_event(Step(session, 0), now_ms=1_700_000_000_000)
    parsed = parse_event(encode_event(event), now_ms=1_700_000_000_000)
    assert (parsed.session_id, parsed.item_id, parsed.timestamp) == ("live-r1-0-u7", "10", 1_700_000_000_000)
    assert step_event(Step(session, 1), 0)["event_id"] != event["event_id"]


def test_the_scoreboard_counts_hits_by_the_next_click_and_keeps_latencies() -> None:
    s = LiveSession("s", "u", ("1", "2", "3", "4"))
    board = Scoreboard(k=3, keep=2)
    assert board.hit_rate == 0.0 and board.summary()["latency_p50_ms"] == 0.0
    board.record(result(s, 0, ("9", "2", "8"), latency_ms=10))  # next click "2" at rank 2
    board.record(result(s, 1, ("9", "8", "7"), latency_ms=20))  # "3" missed
    board.record(result(s, 2, ("4",), latency_ms=30, degraded=True))  # "4" at rank 1
    assert (board.hits, board.predictions, board.degraded) == (2, 3, 1)
    assert board.hit_rate == pytest.approx(2 / 3)
    assert [r.rank for r in board.recent] == [1, None]  # newest first, at most `keep`
    summary = board.summary()
    assert summary["hr@3"] == pytest.approx(0.6667) and summary["latency_p50_ms"] == 20.0
    assert summary["latency_p99_ms"] == pytest.approx(29.8) and summary["apply_p50_ms"] == 2.0
