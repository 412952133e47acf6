"""Evaluation protocols: pure functions that cut a MovieLens log into training data and eval cases.

Two protocols, one per literature the project compares against:

- **A, leave-one-out** (``LeaveOneOut``; SASRec, BERT4Rec): per user, the last item is the test
  target, the second-to-last the validation target, the rest is training.
- **B, session time split** (``SessionSplit``; GRU4Rec): the log is cut into sessions at
  inactivity gaps, the last days are the test period, and every next item of a test session is
  predicted from its prefix.

Both return the same frozen ``Split``: one ``TrainData`` that every model is fitted on once, and
validation and test ``Cases`` that ``streamrec.eval.evaluate.evaluate`` scores over the full
catalogue. Under either protocol the training data holds no validation or test event, so one
fitted model can be early-stopped on validation and reported on test without leakage.

Event order is the loader's: time, then file order for equal timestamps.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Final, Literal

import numpy as np
import pandas as pd

from streamrec.data.base import MovieLens
from streamrec.data.datasets import load
from streamrec.data.names import DatasetName
from streamrec.errors import ConfigError
from streamrec.models.base import TrainData

__all__ = [
    "DEFAULT_TEST_DAYS",
    "Cases",
    "LeaveOneOut",
    "ProtocolName",
    "SessionSplit",
    "Split",
    "leave_one_out",
    "make_split",
    "protocol_from_summary",
    "protocol_named",
    "session_split",
    "split",
]

logger = logging.getLogger(__name__)

ProtocolName = Literal["loo", "session"]

_DAY: Final = 86_400

#: ``--test-days`` (and validation days) when not given, per dataset. ML-1M's log runs 2000-04-25 ..
#: 2003-02-28 but 90% of it falls in 2000, so its tail is thin. Measured with a one-hour gap:
#: 30 days give 94 test sessions (1,348 cases), 60 days 227 (2,917), 90 days 341 (3,944) and 180
#: days 609 (7,522). 90 days is the shortest period whose test set (and the 268-session, 3,578-case
#: validation set before it) separates the baselines clearly, while training keeps 98.5% of the
#: interactions (985,421). ML-100K spans only seven months (1997-09 .. 1998-04) with steady
#: activity: 30 days give 363 test sessions (16,112 cases) and 243 validation sessions (8,799) and
#: leave 74% of the log for training.
DEFAULT_TEST_DAYS: Final[Mapping[str, int]] = MappingProxyType({"ml-1m": 90, "ml-100k": 30})


@dataclass(frozen=True, eq=False)
class Cases:
    """Evaluation cases: predict ``targets[i]`` from ``histories[i]`` over the whole catalogue.

    ``histories[i]`` is the model input (a user's history or a session prefix) in time order, and
    ``history_times[i]`` its timestamps; ``target_times[i]`` is when the target happened. When
    ``exclude_history`` is true the history's items may not be recommended. ``users[i]`` is whose
    history it is. Times and users are for checks and grouped reports; models see only histories.
    """

    histories: Sequence[np.ndarray]
    history_times: Sequence[np.ndarray]
    targets: np.ndarray  # int32 (N,)
    target_times: np.ndarray  # int64 (N,)
    users: np.ndarray  # object, str (N,)
    exclude_history: bool

    def __post_init__(self) -> None:
        sizes = {len(self.histories), len(self.history_times), len(self.targets), len(self.target_times),
                 len(self.users)}
        if len(sizes) != 1:
            raise ValueError("every field of Cases needs one entry per case")

    def __len__(self) -> int:
        return len(self.targets)

    def sample(self, n: int, seed: int = 0) -> Cases:
        """At most ``n`` cases drawn uniformly without replacement, kept in their original order.

        A random subset rather than the first ``n``: the first cases all come from the earliest
        users or sessions, which would bias a quick run.
        """
        if n >= len(self):
            return self
        keep = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        return Cases([self.histories[i] for i in keep], [self.history_times[i] for i in keep], self.targets[keep],
                     self.target_times[keep], self.users[keep], self.exclude_history)


@dataclass(frozen=True, eq=False)
class Split:
    """A protocol's output. ``train_users[i]`` is the user of ``train.sequences[i]``.

    ``summary`` holds the settings and sizes, JSON-serialisable, for reports; its ``"description"``
    names the protocol in words.
    """

    train: TrainData
    train_users: np.ndarray
    validation: Cases
    test: Cases
    summary: Mapping[str, object]


@dataclass(frozen=True)
class LeaveOneOut:
    """Protocol A. ``exclude_history``: rank only items the user has not interacted with, as the
    SASRec/BERT4Rec papers do (a MovieLens user rates a movie once, so re-recommending is useless).
    Users with fewer than ``3`` interactions cannot give a validation and a test target; their whole
    history is kept as training data."""

    exclude_history: bool = True

    name: ClassVar[ProtocolName] = "loo"


@dataclass(frozen=True)
class SessionSplit:
    """Protocol B.

    ``gap_s``: a pause longer than this starts a new session (one hour, as in the publisher's replay).
    ``test_days``: sessions that start in the last ``test_days`` of the log are test sessions; see
    ``DEFAULT_TEST_DAYS`` for the per-dataset choice (the default here is ML-1M's).
    ``validation_days``: carved the same way from the end of what remains. Training stops at the
    validation cut, as leave-one-out keeps the validation item out of training; the price is that
    the test model never sees the validation period, so a final run may set ``0``, which disables
    validation and trains on everything before the test period.
    ``exclude_history``: ``False`` by default, the GRU4Rec convention: a session may return to an
    item, so items of the prefix stay rankable. With ``True``, cases whose target already occurs in
    their prefix are dropped (they could never be hit) and counted in the summary.
    """

    gap_s: int = 3600
    test_days: float = 90
    validation_days: float = 90
    min_length: int = 2
    exclude_history: bool = False

    name: ClassVar[ProtocolName] = "session"

    def __post_init__(self) -> None:
        if self.gap_s <= 0 or self.test_days <= 0 or self.validation_days < 0 or self.min_length < 2:
            raise ConfigError(
                f"session protocol needs gap_s > 0, test_days > 0, validation_days >= 0 and min_length >= 2; got {self}"
            )


def protocol_from_summary(summary: Mapping[str, object]) -> LeaveOneOut | SessionSplit:
    """The protocol that produced a ``Split.summary`` (as stored in a model's manifest), to rebuild its split."""
    if summary.get("protocol") == LeaveOneOut.name:
        return LeaveOneOut(exclude_history=bool(summary["exclude_history"]))
    if summary.get("protocol") == SessionSplit.name:
        return SessionSplit(gap_s=int(summary["gap_s"]), test_days=float(summary["test_days"]),  # type: ignore[arg-type]
                            validation_days=float(summary["validation_days"]),  # type: ignore[arg-type]
                            min_length=int(summary["min_length"]),  # type: ignore[call-overload]
                            exclude_history=bool(summary["exclude_history"]))
    raise ConfigError(f"unknown protocol in a split summary: {summary.get('protocol')!r}")


def protocol_named(name: ProtocolName, dataset: str, *, gap_s: int | None = None,
                   test_days: float | None = None) -> LeaveOneOut | SessionSplit:
    """Protocol ``name`` for a MovieLens ``dataset``; for the session protocol, ``test_days`` test and as
    many validation days (default ``DEFAULT_TEST_DAYS[dataset]``) and ``gap_s`` (default one hour).
    Leave-one-out takes neither."""
    if name == LeaveOneOut.name:
        if gap_s is not None or test_days is not None:
            raise ConfigError("gap_s and test_days apply to the session protocol only")
        return LeaveOneOut()
    days = DEFAULT_TEST_DAYS[dataset] if test_days is None else test_days
    protocol = SessionSplit(test_days=days, validation_days=days)
    return protocol if gap_s is None else replace(protocol, gap_s=gap_s)


def split(data: MovieLens, protocol: LeaveOneOut | SessionSplit) -> Split:
    """Apply either protocol."""
    if isinstance(protocol, LeaveOneOut):
        return leave_one_out(data, protocol)
    return session_split(data, protocol)


# ---------------------------------------------------------------- protocol A


def leave_one_out(data: MovieLens, config: LeaveOneOut = LeaveOneOut()) -> Split:
    """Protocol A: per user, training = ``h[:-2]``; validation ``h[:-2] -> h[-2]``; test ``h[:-1] -> h[-1]``.

    The test input includes the validation item (the model was not trained on it, but at test time
    it is part of the user's known history), as in SASRec's evaluation code.
    """
    users, items, stamps = _by_user(data.interactions)
    bounds = _group_bounds(users)
    histories = np.split(items, bounds[1:-1])
    times = np.split(stamps, bounds[1:-1])
    user_ids = users[bounds[:-1]]
    lengths = np.diff(bounds)
    full = lengths >= 3

    train_seqs = [h[:-2] if ok else h for h, ok in zip(histories, full, strict=True)]
    train_times = [t[:-2] if ok else t for t, ok in zip(times, full, strict=True)]
    idx = np.flatnonzero(full)
    seqs, seq_times = [histories[i] for i in idx], [times[i] for i in idx]
    validation, val_dropped = _cases(seqs, seq_times, lengths[idx] - 2, user_ids[idx], config.exclude_history)
    test, test_dropped = _cases(seqs, seq_times, lengths[idx] - 1, user_ids[idx], config.exclude_history)
    excluded = "history excluded" if config.exclude_history else "history not excluded"
    summary = {
        "protocol": config.name,
        "description": f"protocol A: leave-one-out, full ranking, {excluded}",
        "exclude_history": config.exclude_history,
        "n_items": data.n_items,
        "interactions": len(items),
        "users": len(user_ids),
        "users_evaluated": int(full.sum()),
        "users_train_only": int((~full).sum()),  # fewer than 3 interactions: training only
        "train_sequences": len(train_seqs),
        "train_interactions": int(sum(len(s) for s in train_seqs)),
        "validation_cases": len(validation),
        "test_cases": len(test),
        "validation_cases_dropped_target_in_history": val_dropped,
        "test_cases_dropped_target_in_history": test_dropped,
    }
    logger.info("leave-one-out split: %s", summary)
    train = TrainData(train_seqs, train_times, data.n_items, data.items)
    return Split(train, user_ids, validation, test, MappingProxyType(summary))


# ---------------------------------------------------------------- protocol B


def session_split(data: MovieLens, config: SessionSplit = SessionSplit()) -> Split:
    """Protocol B: sessions at gaps > ``gap_s``, time-split into train / validation / test.

    With ``t_max`` the last timestamp of the log, ``test_cut = t_max - test_days`` and
    ``val_cut = test_cut - validation_days``:

    - training sessions end before ``val_cut``;
    - validation sessions start at or after ``val_cut`` and end before ``test_cut``;
    - test sessions start at or after ``test_cut``;
    - sessions straddling either cut are dropped, so every training interaction is earlier
      than every validation interaction, and those earlier than every test interaction.

    Then, as in GRU4Rec's preprocessing, validation and test events whose item never occurs in
    training are removed and sessions left shorter than ``min_length`` are dropped. Each remaining
    session ``s`` gives the cases ``s[:t] -> s[t]`` for ``t = 1 .. len(s) - 1``.
    """
    users, items, stamps = _by_user(data.interactions)
    new = np.ones(len(items), dtype=bool)
    new[1:] = (users[1:] != users[:-1]) | (np.diff(stamps) > config.gap_s)
    bounds = np.append(np.flatnonzero(new), len(items))
    lengths = np.diff(bounds)
    start, end = stamps[bounds[:-1]], stamps[bounds[1:] - 1]
    long_enough = lengths >= config.min_length

    t_max = int(stamps.max()) if len(stamps) else 0
    test_cut = t_max - round(config.test_days * _DAY)
    val_cut = test_cut - round(config.validation_days * _DAY)
    is_train = long_enough & (end < val_cut)
    is_val = long_enough & (start >= val_cut) & (end < test_cut)
    is_test = long_enough & (start >= test_cut)
    straddling = long_enough & ~(is_train | is_val | is_test)

    sessions = np.split(items, bounds[1:-1])
    times = np.split(stamps, bounds[1:-1])
    session_users = users[bounds[:-1]]
    train_idx = np.flatnonzero(is_train)
    train_seqs = [sessions[i] for i in train_idx]
    known = np.zeros(data.n_items + 1, dtype=bool)
    if train_seqs:
        known[np.concatenate(train_seqs)] = True

    summary: dict[str, object] = {
        "protocol": config.name,
        "description": _describe_session(config),
        "gap_s": config.gap_s,
        "test_days": config.test_days,
        "validation_days": config.validation_days,
        "min_length": config.min_length,
        "exclude_history": config.exclude_history,
        "n_items": data.n_items,
        "interactions": len(items),
        "validation_cut": _iso(val_cut),
        "test_cut": _iso(test_cut),
        "sessions": len(lengths),
        "sessions_long_enough": int(long_enough.sum()),
        "sessions_straddling_dropped": int(straddling.sum()),
        "train_sessions": len(train_seqs),
        "train_interactions": int(sum(len(s) for s in train_seqs)),
    }
    parts = {}
    for part, mask in (("validation", is_val), ("test", is_test)):
        idx = np.flatnonzero(mask)
        seen = [known[sessions[i]] for i in idx]  # GRU4Rec: drop events of items unseen in training
        kept = [sessions[i][m] for i, m in zip(idx, seen, strict=True)]
        kept_times = [times[i][m] for i, m in zip(idx, seen, strict=True)]
        unknown_events = int(sum(len(m) - m.sum() for m in seen))
        long = [j for j, s in enumerate(kept) if len(s) >= config.min_length]
        n_next = [len(kept[j]) - 1 for j in long]  # every next item of the session is a case
        parts[part], dropped = _cases(
            _repeat([kept[j] for j in long], n_next),
            _repeat([kept_times[j] for j in long], n_next),
            np.concatenate([np.arange(1, n + 1) for n in n_next]) if long else np.zeros(0, dtype=np.int64),
            np.repeat(session_users[idx[long]], n_next),
            config.exclude_history,
        )
        summary |= {
            f"{part}_sessions": len(long),
            f"{part}_events": int(sum(len(kept[j]) for j in long)),
            f"{part}_cases": len(parts[part]),
            f"{part}_events_dropped_unknown_item": unknown_events,
            f"{part}_sessions_dropped_too_short": len(kept) - len(long),
            f"{part}_cases_dropped_target_in_history": dropped,
        }
    logger.info("session split: %s", summary)
    train = TrainData(train_seqs, [times[i] for i in train_idx], data.n_items, data.items)
    return Split(train, session_users[train_idx], parts["validation"], parts["test"], MappingProxyType(summary))


def _describe_session(config: SessionSplit) -> str:
    excluded = "prefix excluded" if config.exclude_history else "prefix not excluded"
    return (
        f"protocol B: sessions (gap {config.gap_s} s), time split (last {config.test_days:g} days test), "
        f"next item, full ranking, {excluded}"
    )


# ---------------------------------------------------------------- helpers


def _by_user(inter: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users, items and timestamps grouped by user, each user's events in the log's order.

    The log is sorted by time with ties in file order; a stable sort by user keeps that order.
    """
    if inter.empty:
        raise ValueError("no interactions to split")
    if not np.all(np.diff(inter["timestamp"].to_numpy()) >= 0):
        raise ValueError("interactions must be sorted by timestamp (as movielens.load returns them)")
    users = inter["user_id"].to_numpy(dtype=object)
    codes, _ = pd.factorize(users)
    order = np.argsort(codes, kind="stable")
    items = inter["item_idx"].to_numpy(dtype=np.int32)[order]
    stamps = inter["timestamp"].to_numpy(dtype=np.int64)[order]
    return users[order], items, stamps


def _group_bounds(sorted_keys: np.ndarray) -> np.ndarray:
    """Start offsets of each run of equal keys, plus the total length."""
    if len(sorted_keys) == 0:
        return np.zeros(1, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
    return np.append(starts, len(sorted_keys))


def _repeat(seqs: Sequence[np.ndarray], counts: Sequence[int]) -> list[np.ndarray]:
    """Each sequence ``counts[i]`` times (the same array object: no copy)."""
    return [s for s, n in zip(seqs, counts, strict=True) for _ in range(n)]


def _cases(
    seqs: Sequence[np.ndarray],
    times: Sequence[np.ndarray],
    positions: np.ndarray,
    users: np.ndarray,
    exclude_history: bool,
) -> tuple[Cases, int]:
    """Case ``i`` predicts ``seqs[i][positions[i]]`` from ``seqs[i][:positions[i]]`` (views, not copies).

    With exclusion, cases whose target already occurs in their history are dropped: such a target
    could never be recommended, so keeping it would only measure how often users repeat
    themselves. Their number is returned for the summary.
    """
    positions = np.asarray(positions, dtype=np.int64)
    targets = np.fromiter((s[p] for s, p in zip(seqs, positions, strict=True)), dtype=np.int32, count=len(seqs))
    target_times = np.fromiter((t[p] for t, p in zip(times, positions, strict=True)), dtype=np.int64,
                               count=len(seqs))
    histories = [s[:p] for s, p in zip(seqs, positions, strict=True)]
    keep = np.ones(len(seqs), dtype=bool)
    if exclude_history and positions.sum():
        flat = np.concatenate(histories)
        row = np.repeat(np.arange(len(seqs)), positions)
        keep[row[flat == targets[row]]] = False
    dropped = int((~keep).sum())
    if dropped:
        logger.info("%s cases dropped: their target is already in their history", dropped)
    idx = np.flatnonzero(keep).tolist()
    cases = Cases([histories[i] for i in idx], [times[i][: positions[i]] for i in idx], targets[idx],
                  target_times[idx], np.asarray(users, dtype=object)[idx], exclude_history)
    return cases, dropped


def _iso(ts: int) -> str:
    return pd.Timestamp(ts, unit="s", tz="UTC").isoformat()


def make_split(dataset: DatasetName, protocol: ProtocolName, data_dir: Path) -> tuple[Split, list[str]]:
    """The split the models train, validate and test on, and the dataset's vocabulary: a MovieLens
    dataset with its ``DEFAULT_TEST_DAYS``, or a retraining snapshot with the days it was cut with."""
    data = load(dataset, data_dir)
    if protocol == "loo":
        return split(data, LeaveOneOut()), list(data.vocab)
    days = DEFAULT_TEST_DAYS.get(dataset) or _snapshot_days(dataset, data_dir)
    return split(data, SessionSplit(test_days=days, validation_days=days)), list(data.vocab)


def _snapshot_days(dataset: str, data_dir: Path) -> float:
    """The test (and validation) days a snapshot was cut with (``streamrec retrain --test-days``)."""
    from streamrec.data.snapshots import snapshot_meta

    return float(snapshot_meta(dataset, data_dir)["test_days"])  # type: ignore[arg-type]
