"""The pure parts of ``streamrec bench peer``: the atomic file, the split check, the peer's metrics.

RecBole itself is not needed: ``recbole_loo`` below replays what RecBole 1.2.1 does with an atomic
file under our settings (``SequentialDataset.data_augmentation``, then ``Dataset.build`` with
``order: TO`` and ``_split_index_by_leave_one_out``), so the check can be tested on both a faithful
and a diverging peer. The run against the real RecBole is ``streamrec bench peer`` itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from streamrec.bench.peer import (
    PeerBenchConfig,
    PeerCases,
    SideResult,
    atomic_rows,
    check_split,
    ensure_peer_venv,
    format_table,
    peer_test_metrics,
    write_atomic,
)
from streamrec.cli import build_parser
from streamrec.errors import ConfigError, DataError
from streamrec.eval.evaluate import evaluate
from streamrec.eval.protocols import LeaveOneOut, SessionSplit, Split, leave_one_out, session_split
from streamrec.models.base import TrainData
from tests.eval.helpers import make_log

MAX_LEN = 3

# (user, item, time) in file order: ties within a user (a's y and z at 20) and across users (c's z
# at 20) must keep file order; user d has 2 interactions (training only); u1 are numeric ids.
ROWS = [
    ("a", "x", 10), ("b", "x", 11), ("a", "y", 20), ("c", "z", 20), ("a", "z", 20), ("a", "w", 30),
    ("c", "x", 40), ("b", "y", 50), ("d", "q", 55), ("c", "y", 60), ("a", "v", 70), ("b", "w", 75),
    ("c", "v", 80), ("d", "x", 85), ("a", "u", 90), ("b", "z", 95), ("c", "w", 99),
]


@pytest.fixture
def parts() -> Split:
    return leave_one_out(make_log(ROWS), LeaveOneOut())


def read_atomic(path: Path) -> list[tuple[str, int, float]]:
    lines = path.read_text().splitlines()
    assert lines[0] == "user_id:token\titem_id:token\ttimestamp:float"
    return [(u, int(i), float(t)) for u, i, t in (line.split("\t") for line in lines[1:])]


def recbole_loo(path: Path, max_len: int) -> tuple[PeerCases, PeerCases, int]:
    """RecBole 1.2.1's sequential leave-one-out of an atomic file, with tokens kept as they are."""
    rows = read_atomic(path)
    users = np.array([u for u, _, _ in rows], dtype=object)
    items = np.array([i for _, i, _ in rows], dtype=np.int64)
    stamps = np.array([t for _, _, t in rows])
    # data_augmentation: sort by [user, time] (stable), one sample per prefix, the last max_len as input
    codes = {u: k for k, u in enumerate(sorted(set(users)))}  # RecBole remaps tokens; the order is immaterial
    order = np.lexsort((stamps, np.array([codes[u] for u in users])))
    samples: list[tuple[str, int, list[int], float]] = []
    start = 0
    for n, i in enumerate(order):
        if n == 0 or users[i] != users[order[n - 1]]:
            start = n
            continue
        start = max(start, n - max_len)
        samples.append((users[i], int(items[i]), [int(items[j]) for j in order[start:n]], stamps[i]))
    # build(): order TO sorts the samples by time (stable); the groups keep that order
    samples = [samples[k] for k in np.argsort([s[3] for s in samples], kind="stable")]
    groups: dict[str, list[int]] = {}
    for k, s in enumerate(samples):
        groups.setdefault(s[0], []).append(k)
    train = 0
    parts: dict[str, list[tuple[str, int, list[int], float]]] = {"valid": [], "test": []}
    for index in groups.values():  # _split_index_by_leave_one_out with leave_one_num = 2
        legal = min(2, len(index) - 1)
        train += len(index) - legal
        for name, k in zip(("valid", "test")[2 - legal:], index[len(index) - legal:], strict=True):
            parts[name].append(samples[k])

    def cases(part: list[tuple[str, int, list[int], float]]) -> PeerCases:
        windows = np.zeros((len(part), max_len), dtype=np.int64)
        for r, (_, _, window, _) in enumerate(part):
            windows[r, :len(window)] = window  # RecBole aligns left, pads right
        return PeerCases(np.array([s[0] for s in part]), np.array([s[1] for s in part], dtype=np.int64), windows,
                         np.array([len(s[2]) for s in part], dtype=np.int64))

    return cases(parts["valid"]), cases(parts["test"]), train


def test_atomic_rows_number_each_users_full_sequence_in_our_order(parts: Split) -> None:
    users, items, stamps = atomic_rows(parts)
    data = make_log(ROWS)
    for user in ("a", "b", "c", "d"):
        mine = users == user
        want = [data.vocab.index(i) for u, i, _ in sorted((r for r in ROWS if r[0] == user), key=lambda r: r[2])]
        assert items[mine].tolist() == want  # Python's sort is stable: ties stay in file order
        assert stamps[mine].tolist() == list(range(len(want)))
    assert len(items) == len(ROWS)


def test_recbole_reproduces_our_split_from_the_atomic_file(parts: Split, tmp_path: Path) -> None:
    path = tmp_path / "x" / "x.inter"
    assert write_atomic(parts, path) == len(ROWS)
    validation, test, train = recbole_loo(path, MAX_LEN)
    check = check_split(parts, validation, test, train, MAX_LEN)
    assert (check.validation_users, check.test_users) == (3, 3)  # d is too short to evaluate
    assert check.train_samples == sum(len(s) - 1 for s in parts.train.sequences)


def test_real_timestamps_with_ties_would_not_reproduce_it(parts: Split, tmp_path: Path) -> None:
    """Why the timestamps are synthetic: a's y and z share one, and a sort may swap them."""
    data = make_log(ROWS)
    path = tmp_path / "x.inter"
    shuffled = [r for r in ROWS if r[0] == "a"][::-1] + [r for r in ROWS if r[0] != "a"]  # same times, other order
    path.write_text("user_id:token\titem_id:token\ttimestamp:float\n"
                    + "".join(f"{u}\t{data.vocab.index(i)}\t{t}\n" for u, i, t in shuffled))
    validation, test, train = recbole_loo(path, MAX_LEN)
    with pytest.raises(DataError, match="user a"):
        check_split(parts, validation, test, train, MAX_LEN)


def test_the_check_names_a_user_whose_target_differs(parts: Split, tmp_path: Path) -> None:
    write_atomic(parts, tmp_path / "x.inter")
    validation, test, train = recbole_loo(tmp_path / "x.inter", MAX_LEN)
    wrong = dataclasses.replace(test, targets=np.roll(test.targets, 1))
    with pytest.raises(DataError, match="test: user"):
        check_split(parts, validation, wrong, train, MAX_LEN)
    with pytest.raises(DataError, match="training prefixes"):
        check_split(parts, validation, test, train + 1, MAX_LEN)


def test_the_check_catches_recbole_on_a_user_with_three_interactions(tmp_path: Path) -> None:
    """RecBole gives a 3-interaction user (2 prefixes) a test case but no validation case; we give both."""
    parts = leave_one_out(make_log([*ROWS, ("e", "x", 1), ("e", "y", 2), ("e", "z", 3)]), LeaveOneOut())
    write_atomic(parts, tmp_path / "x.inter")
    with pytest.raises(DataError, match=r"validation: 1 user\(s\) only in ours"):
        check_split(parts, *recbole_loo(tmp_path / "x.inter", MAX_LEN), MAX_LEN)


def test_only_a_leave_one_out_split_that_dropped_nothing_can_be_written() -> None:
    data = make_log(ROWS)
    with pytest.raises(DataError, match="leave-one-out"):
        atomic_rows(session_split(data, SessionSplit(gap_s=15, test_days=0.0005, validation_days=0.0002)))
    repeat = leave_one_out(make_log([*ROWS, ("a", "x", 100)]), LeaveOneOut())  # a's test target repeats x
    with pytest.raises(DataError, match="1 case"):
        atomic_rows(repeat)


class _Fixed:
    """Scores that depend on the history's last item and length, so ranks differ between cases."""

    name = "fixed"

    def __init__(self, n_items: int) -> None:
        self.table = np.random.default_rng(0).random((n_items + 1, n_items + 1)).astype(np.float32)

    def fit(self, data: TrainData) -> _Fixed:
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        scores = np.stack([self.table[h[-1]] + 0.01 * len(h) for h in histories])
        scores[:, 0] = -np.inf
        return scores


def test_peer_metrics_rank_like_evaluate(parts: Split) -> None:
    model = _Fixed(parts.train.n_items)
    scores = model.score(parts.test.histories)
    order = np.array([2, 0, 1])  # the peer's rows come in its own user order
    got = peer_test_metrics(scores[order], parts.test.users[order].astype(str), parts.test, cutoffs=(1, 2))
    want = evaluate(model, parts.test, cutoffs=(1, 2), progress=False)
    raw = evaluate(model, dataclasses.replace(parts.test, exclude_history=False), cutoffs=(1, 2), progress=False)
    for k in ("NDCG@1", "HR@1", "NDCG@2", "HR@2"):
        assert got["history_excluded"][k] == pytest.approx(want[k])
        assert got["history_not_excluded"][k] == pytest.approx(raw[k])
    with pytest.raises(DataError, match="no row"):
        peer_test_metrics(scores[:2], parts.test.users[:2].astype(str), parts.test)


def test_the_table_states_protocol_budget_and_both_rows() -> None:
    metrics = {"NDCG@10": 0.1, "HR@10": 0.2, "NDCG@20": 0.15, "HR@20": 0.3}
    rows = [SideResult("SASRec (RecBole 1.2.1)", "peer", 600, 0.43, 420_000, 420_000, 512, metrics, metrics,
                       "budget", 1, 600.2, 700, {"recbole_own_test_history_not_excluded": metrics}),
            SideResult("SASRec (streamrec)", "ours", 600, 25.5, 154_000, 7_000_000, 128, metrics, metrics,
                       "budget", 24, 600.9, 610)]
    report = {"protocol": "ML-1M, leave-one-out, full catalogue, history excluded", "test_cases": 6040,
              "n_items": 3706, "max_len": 50, "budget": "equal wall-clock training budget: 10 min per side",
              "threads": 2, "device": "cpu", "split_check": None, "rows": [dataclasses.asdict(r) for r in rows]}
    text = format_table(report)
    assert "ML-1M, leave-one-out, full catalogue, history excluded" in text
    assert "10 min per side" in text and "2 torch thread(s)" in text
    assert "SASRec (RecBole 1.2.1)" in text and "SASRec (streamrec)" in text and "0.43" in text
    assert "RecBole's own evaluator" in text


def test_a_stamped_venv_is_reused_and_a_missing_interpreter_is_a_config_error(tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("recbole==1.2.1\n")
    python = tmp_path / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.touch()
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    (tmp_path / "venv" / ".streamrec-stamp").write_text(
        f"requirements {digest}\npython {sys.version_info[0]}.{sys.version_info[1]}\n")
    said: list[str] = []
    assert ensure_peer_venv(tmp_path, python=sys.executable, requirements=requirements, say=said.append) == python
    assert said == []  # nothing was built
    with pytest.raises(ConfigError, match="--python"):
        ensure_peer_venv(tmp_path, python="no-such-python-3.11", requirements=requirements)


def test_bad_settings_and_the_cli_parser() -> None:
    with pytest.raises(ConfigError):
        PeerBenchConfig(budget_s=0)
    with pytest.raises(ConfigError):
        PeerBenchConfig(sides=())
    args = build_parser().parse_args(["bench", "peer", "--dataset", "ml-100k", "--budget-min", "1", "--only", "ours"])
    assert (args.dataset, args.budget_min, args.only, args.max_len, args.peer_batch) == ("ml-100k", 1.0, "ours", 50, 512)
    assert args.func.__name__ == "_bench_peer"
