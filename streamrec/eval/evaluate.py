"""The one evaluation function, used for validation and test alike, and a timed fit-then-evaluate.

``evaluate`` scores the cases' histories in batches through ``model.score`` (the full catalogue),
masks what may not be recommended, and keeps only each case's target rank and its top-k list;
every metric is then computed once over all cases by ``streamrec.eval.metrics``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from tqdm import tqdm

import streamrec.eval.metrics as metrics
from streamrec.errors import ConfigError
from streamrec.eval.protocols import Cases, Split
from streamrec.models.base import Recommender, top_k
from streamrec.models.recommend import item_counts

__all__ = ["evaluate", "evaluate_rows", "fit_and_evaluate"]

logger = logging.getLogger(__name__)


def evaluate(
    model: Recommender,
    cases: Cases,
    *,
    cutoffs: Sequence[int] = (10, 20),
    train_counts: np.ndarray | None = None,
    batch_size: int = 512,
    progress: bool = True,
) -> dict[str, float]:
    """Full-catalogue metrics of ``model`` on ``cases``.

    For each ``k`` in ``cutoffs``: ``HR@k`` (= Recall@k), ``NDCG@k``, ``MRR@k``, ``Coverage@k``, and
    with ``train_counts`` (``streamrec.models.recommend.item_counts``) ``Popularity@k``. Ranks are
    pessimistic under ties and exclude padding, plus the history when ``cases.exclude_history``
    (see ``metrics.ranks``).

    A model with ``score_in_context(histories, times, now)`` (the ranking pipeline, whose features
    include the session's recency) is given each case's event times and its target's time as
    the request time.
    """
    in_context = getattr(model, "score_in_context", None)

    def rows(lo: int, hi: int) -> np.ndarray:
        histories = cases.histories[lo:hi]
        if in_context is not None:
            return in_context(histories, cases.history_times[lo:hi], cases.target_times[lo:hi])
        return model.score(histories)

    return evaluate_rows(rows, cases, name=getattr(model, "name", type(model).__name__), cutoffs=cutoffs,
                         train_counts=train_counts, batch_size=batch_size, progress=progress)


def evaluate_rows(
    rows: Callable[[int, int], np.ndarray],
    cases: Cases,
    *,
    name: str = "model",
    cutoffs: Sequence[int] = (10, 20),
    train_counts: np.ndarray | None = None,
    batch_size: int = 512,
    progress: bool = True,
) -> dict[str, float]:
    """``evaluate`` for scores given by ``rows(lo, hi)``: the ``(hi - lo, n_items + 1)`` scores of
    cases ``lo..hi``. Lets an experiment score a model once and evaluate many variants of it."""
    if not cutoffs or min(cutoffs) < 1 or batch_size < 1:
        raise ConfigError(f"cutoffs and batch_size must be positive, got {tuple(cutoffs)} and {batch_size}")
    k_max = max(cutoffs)
    n_cases = len(cases)
    all_ranks = np.zeros(n_cases, dtype=np.int64)
    tops: list[np.ndarray] = []
    n_items = None if train_counts is None else len(train_counts) - 1
    batches = range(0, n_cases, batch_size)
    bar = tqdm(batches, desc=f"evaluating {name}", unit=" batch", leave=False, disable=None if progress else True)
    for lo in bar:
        hi = min(lo + batch_size, n_cases)
        histories = cases.histories[lo:hi]
        scores = np.asarray(rows(lo, hi), dtype=np.float32)
        if n_items is None:
            n_items = scores.shape[1] - 1
        if scores.shape != (hi - lo, n_items + 1):
            raise ValueError(f"{name} scored shape {scores.shape}, "
                             f"expected ({hi - lo}, {n_items + 1}) (one column per item, plus padding)")
        excluded = metrics.exclusion_mask(histories, n_items, cases.exclude_history)
        all_ranks[lo:hi] = metrics.ranks(scores, cases.targets[lo:hi], excluded)
        masked = np.where(excluded, -np.inf, scores)
        top, top_scores = top_k(masked, k_max)
        tops.append(np.where(np.isneginf(top_scores), 0, top))  # fewer than k allowed items
    top_all = np.concatenate(tops) if tops else np.zeros((0, k_max), dtype=np.int64)

    n_items = n_items or 0  # no cases and no counts: nothing was scored
    percentiles = None if train_counts is None else metrics.popularity_percentiles(train_counts)

    result: dict[str, float] = {}
    for k in sorted(cutoffs):
        result[f"HR@{k}"] = metrics.hit_rate(all_ranks, k)
        result[f"NDCG@{k}"] = metrics.ndcg(all_ranks, k)
        result[f"MRR@{k}"] = metrics.mrr(all_ranks, k)
        result[f"Coverage@{k}"] = metrics.coverage(top_all[:, :k], n_items)
        if percentiles is not None:
            result[f"Popularity@{k}"] = metrics.popularity(top_all[:, :k], percentiles)
    return result


def fit_and_evaluate(
    model: Recommender,
    split: Split,
    *,
    part: Literal["validation", "test"] = "test",
    cutoffs: Sequence[int] = (10, 20),
    limit_cases: int | None = None,
    batch_size: int = 512,
    progress: bool = True,
) -> dict[str, float]:
    """Fit ``model`` on ``split.train`` and ``evaluate`` it on one part, adding ``fit_s``,
    ``eval_s`` (wall seconds) and ``cases``. ``limit_cases`` evaluates a seeded random subset.

    A model with ``fit_split(split)`` (the ranking pipeline, whose second stage learns from the
    validation part) is fitted with the whole split and may only be evaluated on test."""
    cases = split.validation if part == "validation" else split.test
    if limit_cases is not None:
        cases = cases.sample(limit_cases)
    fit_split = getattr(model, "fit_split", None)
    if fit_split is not None and part != "test":
        raise ConfigError(f"{model.name} learns from the validation part, so it can only be evaluated on test")
    start = time.perf_counter()
    if fit_split is not None:
        fit_split(split)
    else:
        model.fit(split.train)
    fitted = time.perf_counter()
    result = evaluate(model, cases, cutoffs=cutoffs, train_counts=item_counts(split.train),
                      batch_size=batch_size, progress=progress)
    done = time.perf_counter()
    logger.info("%s: fit %.2fs, %s cases evaluated in %.2fs", model.name, fitted - start, len(cases), done - fitted)
    return {**result, "fit_s": fitted - start, "eval_s": done - fitted, "cases": float(len(cases))}
