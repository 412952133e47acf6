from __future__ import annotations

from itertools import pairwise
from typing import Any

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamrec.data.replay import ReplayConfig, expected_sessions, replay_events
from streamrec.errors import ConfigError

KEYS = {"event_id", "session_id", "user_id", "item_id", "event_type", "timestamp"}


def frame(rows: list[tuple[str, str, int, int]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])


def event(event_id: str, session: str, item: str, ts: int) -> dict[str, Any]:
    return {"event_id": event_id, "session_id": session, "item_id": item, "timestamp": ts}


def test_sessions_split_only_at_gaps_longer_than_the_threshold() -> None:
    rows = [("1", "a", 3, 0), ("2", "x", 3, 10), ("1", "b", 3, 3600), ("1", "c", 3, 7201)]
    rows += [("2", "y", 3, 9000), ("1", "d", 3, 7300)]
    got = [(e["user_id"], e["item_id"], e["session_id"]) for e in replay_events(frame(rows), dataset="t")]
    assert got == [
        ("1", "a", "t-u1-s0"),
        ("2", "x", "t-u2-s0"),
        ("1", "b", "t-u1-s0"),  # a gap of exactly session_gap_s stays in the session
        ("1", "c", "t-u1-s1"),  # 3601 s > 3600 s
        ("1", "d", "t-u1-s1"),
        ("2", "y", "t-u2-s1"),  # each user counts their own sessions
    ]
    assert [e["session_id"] for e in replay_events(frame(rows), ReplayConfig(session_gap_s=10_000), dataset="t")] == [
        "t-u1-s0", "t-u2-s0", "t-u1-s0", "t-u1-s0", "t-u1-s0", "t-u2-s0",
    ]  # fmt: skip


def test_events_are_in_time_order_with_ms_timestamps_types_and_row_ids() -> None:
    rows = [("u", "late", 5, 300), ("u", "tie1", 1, 200), ("v", "first", 2, 100), ("w", "tie2", 4, 200)]
    rows += [("u", "tie3", 3, 200)]
    events = list(replay_events(frame(rows)))
    assert all(set(e) == KEYS for e in events)
    assert [e["item_id"] for e in events] == ["first", "tie1", "tie2", "tie3", "late"]
    assert [e["timestamp"] for e in events] == [100_000, 200_000, 200_000, 200_000, 300_000]
    assert [e["event_type"] for e in events] == ["view", "view", "add_to_cart", "click", "purchase"]
    assert [e["event_id"] for e in events] == ["ml-1m-2", "ml-1m-1", "ml-1m-3", "ml-1m-4", "ml-1m-0"]  # input rows
    assert all(type(e["timestamp"]) is int and type(e["user_id"]) is str for e in events)


def test_many_ties_keep_row_order() -> None:
    stamps = [(i * 7) % 3 for i in range(300)]  # large enough that an unstable sort would reorder ties
    events = replay_events(frame([("u", f"i{i}", 3, ts) for i, ts in enumerate(stamps)]))
    expected = sorted(range(300), key=lambda i: (stamps[i], i))
    assert [e["event_id"] for e in events] == [f"ml-1m-{i}" for i in expected]


def test_replays_are_deterministic_and_a_limit_is_a_prefix() -> None:
    rows = [(f"u{i % 3}", f"i{i}", 1 + i % 5, (i * 7919) % 20_000) for i in range(200)]
    full = list(replay_events(frame(rows), dataset="ml-100k"))
    assert full == list(replay_events(frame(rows), dataset="ml-100k"))
    assert len({e["event_id"] for e in full}) == len(full) == 200
    assert list(replay_events(frame(rows), dataset="ml-100k", limit=37)) == full[:37]
    assert list(replay_events(frame(rows), limit=0)) == []


def test_replay_rejects_bad_input_eagerly() -> None:
    with pytest.raises(ValueError, match="timestamp"):
        replay_events(frame([("u", "i", 3, 1)]).drop(columns="timestamp"))
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        replay_events(frame([("u", "i", 9, 1), ("u", "i", 0, 2)]))
    with pytest.raises(ConfigError, match="limit"):
        replay_events(frame([("u", "i", 3, 1)]), limit=-1)
    with pytest.raises(ConfigError, match="session_gap_s"):
        ReplayConfig(session_gap_s=-1)
    custom = ReplayConfig(event_types_by_rating={9: "purchase"})
    assert [e["event_type"] for e in replay_events(frame([("u", "i", 9, 1)]), custom)] == ["purchase"]


@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 50)), min_size=1, max_size=30), st.integers(0, 10))
def test_session_boundaries_are_exactly_the_long_gaps(rows: list[tuple[str, int]], gap: int) -> None:
    config = ReplayConfig(session_gap_s=gap)
    events = list(replay_events(frame([(u, "i", 3, ts) for u, ts in rows]), config, dataset="d"))
    for user in "ab":
        mine = [e for e in events if e["user_id"] == user]
        for prev, cur in pairwise(mine):
            k_prev, k_cur = (int(e["session_id"].rsplit("-s", 1)[1]) for e in (prev, cur))
            assert k_cur == k_prev + (cur["timestamp"] - prev["timestamp"] > gap * 1000)
        assert not mine or mine[0]["session_id"] == f"d-u{user}-s0"


def test_expected_sessions_orders_trims_and_deduplicates() -> None:
    events = [
        event("e1", "s1", "c", 300),
        event("e2", "s1", "a", 100),
        event("e3", "s2", "x", 50),
        event("e4", "s1", "b1", 200),
        event("e5", "s1", "b2", 200),  # same timestamp as e4: input order decides
        event("e1", "s1", "c", 300),  # a duplicate delivery counts once
        event("e6", "s1", "d", 400),
    ]
    assert expected_sessions(events, max_len=10) == {"s1": ["a", "b1", "b2", "c", "d"], "s2": ["x"]}
    assert expected_sessions(events, max_len=3) == {"s1": ["b2", "c", "d"], "s2": ["x"]}
    assert expected_sessions([], max_len=3) == {}
    with pytest.raises(ConfigError, match="max_len"):
        expected_sessions(events, max_len=0)


def test_expected_sessions_of_a_replay_matches_a_groupby() -> None:
    rows = [(f"u{i % 4}", f"i{i}", 3, (i * 37) % 500 * 100) for i in range(120)]
    events = list(replay_events(frame(rows), ReplayConfig(session_gap_s=2_000)))
    by_session = pd.DataFrame(events).groupby("session_id", sort=False)["item_id"].agg(lambda s: s.tolist()[-5:])
    assert expected_sessions(events[::-1], max_len=5) == by_session.to_dict()
