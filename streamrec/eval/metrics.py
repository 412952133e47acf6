"""Full-ranking metrics, computed from the rank of each case's one target over the whole catalogue.

Every function is pure and vectorised over cases. The rank is **pessimistic**: items scored equal
to the target count against it, so a model that scores everything alike gets no credit, and no
metric depends on the order in which a sort happens to break ties.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "coverage",
    "exclusion_mask",
    "hit_rate",
    "mrr",
    "ndcg",
    "popularity",
    "popularity_percentiles",
    "ranks",
]


def exclusion_mask(histories: Sequence[np.ndarray], n_items: int, exclude_history: bool) -> np.ndarray:
    """``(B, n_items + 1)`` bool: the items each case may not recommend.

    Column 0 (padding) is always excluded; with ``exclude_history``, so is every item of the
    case's history.
    """
    mask = np.zeros((len(histories), n_items + 1), dtype=bool)
    mask[:, 0] = True
    if exclude_history and len(histories):
        lengths = np.fromiter((len(h) for h in histories), dtype=np.int64, count=len(histories))
        if lengths.sum():
            mask[np.repeat(np.arange(len(histories)), lengths), np.concatenate(histories)] = True
    return mask


def ranks(scores: np.ndarray, targets: np.ndarray, excluded: np.ndarray) -> np.ndarray:
    """1-based rank of each target among the items its case may recommend, ties pessimistic.

    ``rank = 1 + #{allowed items scored strictly higher} + #{other allowed items scored equal}``,
    where the allowed items are those not in ``excluded`` (see ``exclusion_mask``). Excluded items
    are treated as ``-inf`` and never outrank anything, whatever the model scored them.

    Raises ``ValueError`` if a target is excluded (a protocol bug: it could never be hit) or if a
    score is NaN (a model bug: NaN compares false with everything and would rank first).
    """
    B = len(targets)
    rows = np.arange(B)
    targets = np.asarray(targets, dtype=np.int64)
    if scores.shape[0] != B or excluded.shape != scores.shape:
        raise ValueError(f"scores {scores.shape}, targets ({B},) and mask {excluded.shape} do not match")
    if excluded[rows, targets].any():
        bad = int(np.flatnonzero(excluded[rows, targets])[0])
        raise ValueError(f"case {bad}: target item {targets[bad]} is excluded (padding or in its own history)")
    if np.isnan(scores).any():
        raise ValueError("the model returned NaN scores")
    masked = np.where(excluded, -np.inf, scores)
    target = masked[rows, targets][:, None]
    higher = (masked > target).sum(axis=1)
    equal = ((masked == target) & ~excluded).sum(axis=1) - 1  # minus the target itself
    return (1 + higher + equal).astype(np.int64)


def hit_rate(ranks: np.ndarray, k: int) -> float:
    """HR@k: the share of cases whose target ranks within the top ``k`` (pessimistic ranks).

    With one target per case this equals Recall@k. 0.0 for no cases.
    """
    return float(np.mean(ranks <= k)) if len(ranks) else 0.0


def ndcg(ranks: np.ndarray, k: int) -> float:
    """NDCG@k with one relevant item: mean of ``1 / log2(rank + 1)`` if ``rank <= k``, else 0.

    The ideal DCG is 1 (the target at rank 1), so no normalisation is left. Pessimistic ranks.
    """
    if not len(ranks):
        return 0.0
    return float(np.mean(np.where(ranks <= k, 1.0 / np.log2(ranks + 1.0), 0.0)))


def mrr(ranks: np.ndarray, k: int) -> float:
    """MRR@k: mean of ``1 / rank`` if ``rank <= k``, else 0 (pessimistic ranks)."""
    if not len(ranks):
        return 0.0
    return float(np.mean(np.where(ranks <= k, 1.0 / ranks, 0.0)))


def coverage(top_items: np.ndarray, n_items: int) -> float:
    """Item coverage: distinct items in any top-k list (the rows of ``top_items``) / ``n_items``.

    Entries ``<= 0`` are empty slots (a list shorter than k) and are ignored. The lists come from
    ``streamrec.models.base.top_k``, which breaks ties by lower item index, so a constant scorer
    covers exactly the first ``k`` allowed items.
    """
    items = np.unique(top_items[top_items > 0])
    return len(items) / n_items if n_items else 0.0


def popularity_percentiles(counts: np.ndarray) -> np.ndarray:
    """Each item's training popularity as a percentile in [0, 1]; index 0 (padding) is NaN.

    ``pct(i) = (#{j : c_j < c_i} + 0.5 * #{j != i : c_j == c_i}) / (n - 1)`` over items
    ``j = 1..n`` with training counts ``c``: the share of other items that are less popular, ties
    counted half. The most popular item scores 1, the least 0, and for every count distribution the
    mean over the catalogue is 0.5.
    """
    c = np.asarray(counts, dtype=np.int64)[1:]
    n = len(c)
    ordered = np.sort(c)
    below = np.searchsorted(ordered, c, side="left")
    ties = np.searchsorted(ordered, c, side="right") - below - 1
    pct = (below + 0.5 * ties) / max(n - 1, 1)
    return np.concatenate([[np.nan], pct])


def popularity(top_items: np.ndarray, percentiles: np.ndarray) -> float:
    """Popularity@k: mean training-popularity percentile (``popularity_percentiles``) of the
    recommended items, over every slot of every top-k list (empty slots ``<= 0`` ignored).

    0.5 is the catalogue's average item; a most-popular recommender approaches 1.
    """
    items = top_items[top_items > 0]
    return float(np.mean(percentiles[items])) if len(items) else 0.0
