from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from streamrec.eval.metrics import (
    coverage,
    exclusion_mask,
    hit_rate,
    mrr,
    ndcg,
    popularity,
    popularity_percentiles,
    ranks,
)

NEG = -np.inf


def rank_of(row: list[float], target: int, history: Sequence[int] = (), exclude: bool = True) -> int:
    scores = np.array([row], dtype=np.float32)
    mask = exclusion_mask([np.array(history, dtype=np.int32)], scores.shape[1] - 1, exclude)
    return int(ranks(scores, np.array([target]), mask)[0])


# ---------------------------------------------------------------- ranks


def test_rank_counts_higher_items_and_ties_against_the_target() -> None:
    row = [NEG, 0.5, 0.9, 0.5, 0.1]
    assert rank_of(row, 2) == 1  # the best
    assert rank_of(row, 1) == 3  # item 2 is higher, item 3 ties: both count against it
    assert rank_of(row, 3) == 3  # symmetric: ties are pessimistic for either tied item
    assert rank_of(row, 4) == 4


def test_excluded_items_never_outrank_the_target() -> None:
    row = [NEG, 0.5, 0.9, 0.5, 0.1]
    assert rank_of(row, 1, history=[2]) == 2  # the higher item is in the history
    assert rank_of(row, 1, history=[3]) == 2  # the tied item is in the history
    assert rank_of(row, 1, history=[2, 3, 2]) == 1  # repeated history items are fine
    assert rank_of(row, 1, history=[2], exclude=False) == 3  # not excluded: the history competes


def test_padding_column_never_competes_whatever_the_model_scores_it() -> None:
    assert rank_of([100.0, 0.5, 0.9], 1) == 2
    assert rank_of([0.5, 0.5, 0.5], 1) == 2  # ties with padding do not count either


def test_a_constant_scorer_gets_the_worst_rank() -> None:
    row = [NEG] + [1.0] * 5
    assert [rank_of(row, t) for t in range(1, 6)] == [5] * 5
    assert rank_of(row, 1, history=[2, 3]) == 3  # only the allowed items count


def test_a_target_the_model_scores_minus_infinity_ties_with_allowed_items_only() -> None:
    # items 2 and 5 are higher; item 3 (allowed, -inf) ties; item 4 is excluded; padding never counts
    assert rank_of([NEG, NEG, 0.3, NEG, NEG, 0.2], 1, history=[4]) == 4


def test_an_excluded_target_is_a_bug() -> None:
    with pytest.raises(ValueError, match="target item 2 is excluded"):
        rank_of([NEG, 0.5, 0.9], 2, history=[2])
    with pytest.raises(ValueError, match="target item 0 is excluded"):
        rank_of([NEG, 0.5, 0.9], 0)


def test_nan_scores_are_a_bug() -> None:
    with pytest.raises(ValueError, match="NaN"):
        rank_of([NEG, np.nan, 0.9], 2)


def test_ranks_rows_are_independent() -> None:
    scores = np.array([[NEG, 3, 2, 1], [NEG, 1, 2, 3], [NEG, 1, 1, 1]], dtype=np.float32)
    histories = [np.array([1]), np.array([], dtype=np.int32), np.array([3])]
    got = ranks(scores, np.array([2, 2, 1]), exclusion_mask(histories, 3, True))
    assert got.tolist() == [1, 2, 2]


def brute_force_rank(row: np.ndarray, target: int, excluded: set[int]) -> int:
    allowed = [i for i in range(1, len(row)) if i not in excluded]
    return 1 + sum(1 for i in allowed if i != target and row[i] >= row[target])


@given(
    hnp.arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(2, 12)), elements=st.sampled_from([0.0, 1.0, 2.0])),
    st.data(),
)
def test_vectorised_ranks_match_the_definition(scores: np.ndarray, data: st.DataObject) -> None:
    B, n_plus_1 = scores.shape
    targets = np.array([data.draw(st.integers(1, n_plus_1 - 1)) for _ in range(B)])
    histories = []
    for t in targets:
        others = [i for i in range(1, n_plus_1) if i != t]  # a history never holds its own target
        drawn = data.draw(st.lists(st.sampled_from(others), max_size=4) if others else st.just([]))
        histories.append(np.array(drawn, dtype=np.int32))
    got = ranks(scores, targets, exclusion_mask(histories, n_plus_1 - 1, True))
    want = [brute_force_rank(scores[b], int(targets[b]), set(histories[b].tolist())) for b in range(B)]
    assert got.tolist() == want


# ---------------------------------------------------------------- metrics from ranks


def test_hit_rate_ndcg_mrr_by_hand() -> None:
    r = np.array([1, 3, 10, 11])
    assert hit_rate(r, 10) == 0.75
    assert hit_rate(r, 1) == 0.25
    assert ndcg(r, 10) == pytest.approx((1 + 1 / 2 + 1 / math.log2(11)) / 4)  # log2(4) = 2
    assert ndcg(r, 2) == pytest.approx(1 / 4)
    assert mrr(r, 10) == pytest.approx((1 + 1 / 3 + 1 / 10) / 4)
    assert mrr(r, 20) == pytest.approx((1 + 1 / 3 + 1 / 10 + 1 / 11) / 4)
    empty = np.zeros(0, dtype=np.int64)
    assert (hit_rate(empty, 10), ndcg(empty, 10), mrr(empty, 10)) == (0.0, 0.0, 0.0)


def test_coverage_counts_distinct_recommended_items() -> None:
    top = np.array([[1, 2], [2, 3], [0, 0]])  # 0 = an empty slot
    assert coverage(top, 10) == pytest.approx(0.3)
    assert coverage(top[:, :1], 10) == pytest.approx(0.2)


def test_popularity_percentiles_by_hand() -> None:
    pct = popularity_percentiles(np.array([0, 5, 1, 1, 0]))  # items 1..4 seen 5, 1, 1, 0 times
    assert math.isnan(pct[0])
    assert pct[1:].tolist() == pytest.approx([1.0, 0.5, 0.5, 0.0])  # ties count half
    assert popularity(np.array([[1, 2], [4, 0]]), pct) == pytest.approx(0.5)


@given(st.lists(st.integers(0, 5), min_size=2, max_size=30))
def test_popularity_percentiles_average_one_half(counts: list[int]) -> None:
    pct = popularity_percentiles(np.array([0, *counts]))
    assert np.all((pct[1:] >= 0) & (pct[1:] <= 1))
    assert pct[1:].mean() == pytest.approx(0.5)
