from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamrec.data.base import MovieLens
from streamrec.data.movielens import load
from streamrec.errors import ConfigError
from streamrec.eval.protocols import Cases, LeaveOneOut, SessionSplit, Split, leave_one_out, session_split, split
from tests.eval.helpers import item_ids, make_log

DAY = 86_400


def case_list(data: MovieLens, cases: Cases) -> list[tuple[str, list[str], str]]:
    return [(u, item_ids(data, h), data.vocab[t]) for u, h, t in zip(cases.users, cases.histories, cases.targets,
                                                                       strict=True)]


def assert_no_loo_leak(data: MovieLens, parts: Split) -> None:
    """Per user: training + validation target + test target is the history, each event used once,
    and no case's input reaches its own target's position."""
    train = dict(zip(parts.train_users, parts.train.sequences, strict=True))
    val = {u: (h, t) for u, h, t in zip(parts.validation.users, parts.validation.histories,
                                        parts.validation.targets, strict=True)}
    for user, hist, target, t_time, h_times in zip(parts.test.users, parts.test.histories, parts.test.targets,
                                                   parts.test.target_times, parts.test.history_times, strict=True):
        v_hist, v_target = val[user]
        np.testing.assert_array_equal(v_hist, train[user])  # validation input = training sequence
        np.testing.assert_array_equal(hist, np.append(train[user], v_target))  # test input adds the val target
        assert target not in train[user] and v_target not in train[user]
        assert target not in hist and v_target not in v_hist
        assert len(h_times) == len(hist) and (len(h_times) == 0 or h_times.max() <= t_time)
    n_train = sum(len(s) for s in parts.train.sequences)
    assert n_train + len(parts.validation) + len(parts.test) == len(data.interactions)


def assert_time_ordered(parts: Split) -> None:
    """No training interaction later than a validation one, none of those later than a test one."""
    def times(cases: Cases) -> np.ndarray:
        return np.concatenate([*cases.history_times, cases.target_times])

    train = np.concatenate(parts.train.timestamps)
    val, test = times(parts.validation), times(parts.test)
    assert train.max() < test.min()
    if len(val):
        assert train.max() < val.min() and val.max() < test.min()


# ---------------------------------------------------------------- protocol A: leave-one-out

LOO_ROWS = [  # (user, item, time) in file order; a's y and z share a timestamp with c's z
    ("a", "x", 10), ("b", "x", 11), ("a", "y", 20), ("c", "z", 20), ("a", "z", 20), ("a", "w", 30),
    ("c", "x", 40), ("b", "y", 50), ("c", "y", 60), ("a", "v", 70),
]


def test_leave_one_out_by_hand() -> None:
    data = make_log(LOO_ROWS)
    parts = leave_one_out(data)
    train = {u: item_ids(data, s) for u, s in zip(parts.train_users, parts.train.sequences, strict=True)}
    assert train == {"a": ["x", "y", "z"], "b": ["x", "y"], "c": ["z"]}  # b has 2 events: training only
    assert case_list(data, parts.validation) == [("a", ["x", "y", "z"], "w"), ("c", ["z"], "x")]
    assert case_list(data, parts.test) == [("a", ["x", "y", "z", "w"], "v"), ("c", ["z", "x"], "y")]
    assert parts.test.target_times.tolist() == [70, 60] and parts.validation.target_times.tolist() == [30, 40]
    assert [t.tolist() for t in parts.train.timestamps] == [[10, 20, 20], [11, 50], [20]]
    assert parts.test.exclude_history and parts.validation.exclude_history
    assert parts.train.n_items == data.n_items == 5
    s = parts.summary
    assert (s["users"], s["users_evaluated"], s["users_train_only"]) == (3, 2, 1)
    assert (s["train_interactions"], s["validation_cases"], s["test_cases"]) == (6, 2, 2)
    assert "leave-one-out" in str(s["description"]) and "history excluded" in str(s["description"])
    assert_no_loo_leak(data, parts)


def test_leave_one_out_drops_cases_whose_target_is_in_the_history_only_when_excluding() -> None:
    data = make_log([("a", "x", 1), ("a", "y", 2), ("a", "z", 3), ("a", "x", 4)])  # x consumed again
    excluded = leave_one_out(data, LeaveOneOut(exclude_history=True))
    assert len(excluded.test) == 0 and excluded.summary["test_cases_dropped_target_in_history"] == 1
    assert len(excluded.validation) == 1
    kept = leave_one_out(data, LeaveOneOut(exclude_history=False))
    assert case_list(data, kept.test) == [("a", ["x", "y", "z"], "x")]


def test_unsorted_interactions_are_refused() -> None:
    data = make_log(LOO_ROWS)
    shuffled = MovieLens(data.interactions.iloc[::-1].reset_index(drop=True), data.items, data.vocab, [])
    with pytest.raises(ValueError, match="sorted by timestamp"):
        split(shuffled, LeaveOneOut())


# ---------------------------------------------------------------- protocol B: sessions


def session_rows() -> list[tuple[str, str, int]]:
    """A 10-day log (gap 100 s; test = last 2 days from 8d, validation = day 7..8)."""
    T = 10 * DAY
    return [
        ("u1", "a", 1 * DAY), ("u1", "b", 1 * DAY + 100), ("u1", "c", 1 * DAY + 200),  # gaps == gap: one session
        ("u2", "a", 2 * DAY), ("u2", "c", 2 * DAY + 50),
        ("u3", "a", 3 * DAY),  # a session of one: never used
        ("u5", "a", 7 * DAY - 10), ("u5", "b", 7 * DAY + 20),  # straddles the validation cut
        ("u1", "b", 7 * DAY + 43200), ("u1", "c", 7 * DAY + 43230),  # validation
        ("u3", "b", 8 * DAY - 50), ("u3", "c", 8 * DAY + 30),  # straddles the test cut
        ("u2", "c", 8 * DAY + 43200), ("u2", "a", 8 * DAY + 43260), ("u2", "new1", 8 * DAY + 43300),  # test
        ("u4", "new2", 9 * DAY), ("u4", "b", 9 * DAY + 10),  # test, too short once new2 is removed
        ("u4", "b", T - 50), ("u4", "a", T),  # test, 9d+10 .. T-50 is more than the gap
    ]


def test_session_split_by_hand() -> None:
    data = make_log(session_rows())
    parts = session_split(data, SessionSplit(gap_s=100, test_days=2, validation_days=1))
    assert [item_ids(data, s) for s in parts.train.sequences] == [["a", "b", "c"], ["a", "c"]]
    assert parts.train_users.tolist() == ["u1", "u2"]
    assert case_list(data, parts.validation) == [("u1", ["b"], "c")]
    assert case_list(data, parts.test) == [("u2", ["c"], "a"), ("u4", ["b"], "a")]
    assert not parts.test.exclude_history  # the GRU4Rec default
    s = parts.summary
    assert s["test_cut"] == "1970-01-09T00:00:00+00:00" and s["validation_cut"] == "1970-01-08T00:00:00+00:00"
    assert (s["sessions"], s["sessions_long_enough"], s["sessions_straddling_dropped"]) == (9, 8, 2)
    assert (s["train_sessions"], s["validation_sessions"], s["test_sessions"]) == (2, 1, 2)
    assert (s["test_events_dropped_unknown_item"], s["test_sessions_dropped_too_short"]) == (2, 1)
    assert (s["test_events"], s["test_cases"], s["validation_events_dropped_unknown_item"]) == (4, 2, 0)
    assert_time_ordered(parts)


def test_every_next_item_of_a_session_is_a_case() -> None:
    rows = [("u", "a", 0), ("u", "b", 10), ("v", "b", 5 * DAY), ("v", "a", 5 * DAY + 1), ("v", "b", 5 * DAY + 2),
            ("v", "c", 5 * DAY + 3), ("w", "c", 20), ("w", "a", 30)]
    data = make_log(rows)
    parts = session_split(data, SessionSplit(gap_s=100, test_days=1, validation_days=0))
    assert case_list(data, parts.test) == [("v", ["b"], "a"), ("v", ["b", "a"], "b"), ("v", ["b", "a", "b"], "c")]
    assert parts.test.target_times.tolist() == [5 * DAY + 1, 5 * DAY + 2, 5 * DAY + 3]
    assert len(parts.validation) == 0 and parts.summary["validation_cut"] == parts.summary["test_cut"]
    # excluding the prefix drops the case whose target repeats an earlier item of the session
    strict = session_split(data, SessionSplit(gap_s=100, test_days=1, validation_days=0, exclude_history=True))
    assert case_list(data, strict.test) == [("v", ["b"], "a"), ("v", ["b", "a", "b"], "c")]
    assert strict.summary["test_cases_dropped_target_in_history"] == 1


@pytest.mark.parametrize("bad", [dict(gap_s=0), dict(test_days=0), dict(validation_days=-1), dict(min_length=1)])
def test_bad_session_settings_are_config_errors(bad: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        SessionSplit(**bad)  # type: ignore[arg-type]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("uvwxyz"), st.sampled_from("abcdefgh"), st.integers(0, 20 * DAY)),
                min_size=2, max_size=60),
       st.integers(1, 3 * DAY), st.integers(1, 5), st.integers(0, 5))
def test_session_split_never_trains_on_the_future(rows: list[tuple[str, str, int]], gap: int, test_days: int,
                                                  val_days: int) -> None:
    parts = session_split(make_log(rows), SessionSplit(gap_s=gap, test_days=test_days, validation_days=val_days))
    if parts.train.sequences and len(parts.test):
        assert_time_ordered(parts)
    for cases in (parts.validation, parts.test):
        assert all(len(h) >= 1 for h in cases.histories)
        known = set(np.concatenate(parts.train.sequences).tolist()) if parts.train.sequences else set()
        assert set(cases.targets.tolist()) <= known and all(set(h.tolist()) <= known for h in cases.histories)


@given(st.lists(st.tuples(st.sampled_from("uvw"), st.sampled_from("abcdefghijklmnop"), st.integers(0, 1000)),
                min_size=1, max_size=40))
def test_leave_one_out_never_leaks_targets(rows: list[tuple[str, str, int]]) -> None:
    first = {(user, item): t for user, item, t in reversed(rows)}  # no repeats, like MovieLens
    data = make_log([(user, item, t) for (user, item), t in first.items()])
    assert_no_loo_leak(data, leave_one_out(data))


def test_cases_sample_is_seeded_and_ordered() -> None:
    parts = leave_one_out(make_log([(u, i, t) for t, (u, i) in enumerate(
        (u, i) for u in "abcdefghij" for i in "xyz")]))
    sub = parts.test.sample(4, seed=1)
    assert len(sub) == 4 and sub.users.tolist() == sorted(sub.users.tolist())
    assert sub.users.tolist() == parts.test.sample(4, seed=1).users.tolist()
    assert parts.test.sample(100) is parts.test


# ---------------------------------------------------------------- on the real ML-100K


@pytest.fixture(scope="module")
def ml100k(tmp_path_factory: pytest.TempPathFactory) -> MovieLens:
    return load("ml-100k", Path(tmp_path_factory.mktemp("data")))


@pytest.mark.integration
def test_leave_one_out_on_ml_100k(ml100k: MovieLens) -> None:
    parts = leave_one_out(ml100k)
    assert (len(parts.test), len(parts.validation), parts.summary["users_train_only"]) == (943, 943, 0)
    assert parts.summary["train_interactions"] == 100_000 - 2 * 943
    assert_no_loo_leak(ml100k, parts)


@pytest.mark.integration
def test_session_split_on_ml_100k(ml100k: MovieLens) -> None:
    parts = session_split(ml100k, SessionSplit(test_days=30, validation_days=30))
    s: Mapping[str, Any] = parts.summary
    assert s["test_sessions"] > 300 and s["validation_sessions"] > 100 and s["train_sessions"] > 1000
    assert len(parts.test) == s["test_events"] - s["test_sessions"]  # one case per next item
    assert_time_ordered(parts)
