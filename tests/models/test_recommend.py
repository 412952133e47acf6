"""The shared helpers, and the contract every baseline keeps (shape, dtype, padding, cold start)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec.models import (
    SKNN,
    VSKNN,
    ContentSimilarity,
    ItemKNN,
    MatrixFactorization,
    MostPopular,
)
from streamrec.models.base import Recommender
from streamrec.models.recommend import (
    RecommendMixin,
    backfill,
    clean_histories,
    decayed_weights,
    demote_history,
    exponential_weights,
    history_matrix,
    history_weights,
    item_counts,
)
from tests.models.helpers import MakeData


class Baseline(Recommender, Protocol):
    def recommend(self, history: np.ndarray, k: int, exclude_history: bool = True) -> list[tuple[int, float]]: ...


MODELS = [MostPopular, ItemKNN, SKNN, VSKNN, MatrixFactorization, ContentSimilarity]
SEQUENCES = [[1, 2, 3, 4], [2, 3, 5], [1, 3, 4, 6], [5, 6, 7], [1, 2, 7, 8], [8, 2, 3]]
N_ITEMS = 9  # item 9 never occurs in training


# ---------------------------------------------------------------- helpers


def test_clean_histories_drops_padding_and_unknown_items() -> None:
    out = clean_histories([np.array([0, 3, 12, 2, -1]), np.array([]), np.array([[1, 2]])], n_items=10)
    assert [h.tolist() for h in out] == [[3, 2], [], [1, 2]]
    assert all(h.dtype == np.int64 for h in out)


def test_item_counts_are_exact_integers_over_catalogue_items_only(make_data: MakeData) -> None:
    counts = item_counts(make_data([[1, 2, 2], [2, 0, 9], []], n_items=4))
    assert counts.dtype == np.int64 and counts.tolist() == [0, 1, 3, 0, 0]  # padding and 9 are no items


@pytest.mark.parametrize("rows", [1, 7, 64, 65])  # 65: past _DIRECT_ROWS, scipy's products
def test_history_products_equal_scipys_bit_for_bit(rows: int) -> None:
    rng = np.random.default_rng(rows)
    n = 300
    histories = [rng.integers(1, n + 1, int(rng.integers(0, 60))) for _ in range(rows)]  # repeats, and empty ones
    weights = history_weights(histories, n, exponential_weights(0.9))
    sparse = sp.random(n + 1, n + 1, density=0.05, format="csr", dtype=np.float32, random_state=rows)
    dense = rng.standard_normal((n + 1, 12))
    for got, want in ((weights.times_csr(sparse), (weights.matrix() @ sparse).toarray()),
                      (weights.times_dense(dense), weights.matrix() @ dense)):
        assert got.dtype == np.float64 and np.array_equal(got, want)


def test_history_matrix_keeps_the_latest_weight_of_a_repeated_item() -> None:
    m = history_matrix([np.array([2, 1, 2]), np.array([], dtype=np.int64)], 3, exponential_weights(0.5))
    assert m.shape == (2, 4)
    assert m.toarray().tolist() == [[0.0, 0.5, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]]


def test_backfill_ranks_items_without_evidence_by_popularity_below_the_rest() -> None:
    counts = np.array([0.0, 5.0, 1.0, 9.0, 0.0])
    out = backfill(np.array([[0.0, 0.0, 0.3, 0.0, 0.0], [0.0] * 5]), counts)
    assert out.dtype == np.float32 and np.isneginf(out[:, 0]).all()
    assert np.argsort(-out[0, 1:]).tolist() == [1, 2, 0, 3]  # item 2 (evidence), then 3, 1, 4 by count
    assert (out[1, 1:] < 0).all() and np.argsort(-out[1, 1:])[0] == 2


def test_demote_history_moves_history_items_last_but_keeps_them_finite() -> None:
    scores = np.array([[-np.inf, 3.0, 2.0, 1.0]], dtype=np.float32)
    demote_history(scores, [np.array([1, 2])])
    assert np.isfinite(scores[0, 1:]).all()
    assert np.argsort(-scores[0, 1:])[0] == 2 and scores[0, 1:3].max() < scores[0, 3]


def test_a_clean_batch_derives_its_weights_and_cells_once_and_alike() -> None:
    histories = [np.array([3, 1, 3, 2]), np.array([], dtype=np.int64), np.array([4])]
    clean = clean_histories(histories, 5)
    first = decayed_weights(clean, 5, 0.8)
    assert decayed_weights(clean, 5, 0.8) is first  # the second model to ask gets the same arrays
    assert decayed_weights(clean, 5, 0.9) is not first
    plain = history_weights(histories, 5, exponential_weights(0.8))
    for a, b in ((first.indptr, plain.indptr), (first.items, plain.items), (first.weights, plain.weights)):
        np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(0)
    scores = rng.random((3, 6)).astype(np.float32)
    once, twice, loose = scores.copy(), scores.copy(), scores.copy()
    demote_history(once, clean)
    demote_history(twice, clean)  # from the cells derived by the first call
    demote_history(loose, histories)
    np.testing.assert_array_equal(once, loose)
    np.testing.assert_array_equal(twice, loose)
    assert ("cells",) in clean.derived and clean_histories(clean, 5) is clean


class _Fixed(RecommendMixin):
    name = "fixed"

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        row = np.array([-np.inf, 0.1, 0.5, 0.3, 0.2], dtype=np.float32)
        return np.tile(row, (len(histories), 1))


def test_recommend_is_the_top_k_of_score_with_the_history_excluded() -> None:
    model = _Fixed()
    assert model.recommend(np.array([3]), 2) == [(2, 0.5), (4, pytest.approx(0.2))]
    assert [i for i, _ in model.recommend(np.array([3]), 2, exclude_history=False)] == [2, 3]
    assert [i for i, _ in model.recommend(np.array([2, 3, 4, 99]), 10)] == [1]  # catalogue runs out; 99 unknown
    assert model.recommend(np.array([], dtype=np.int64), 0) == []


# ---------------------------------------------------------------- the contract, for every baseline


@pytest.fixture(params=MODELS, ids=lambda cls: cls.name)
def fitted(request: pytest.FixtureRequest, make_data: MakeData) -> Baseline:
    model: Baseline = request.param()
    model.fit(make_data(SEQUENCES, N_ITEMS))
    return model


def test_is_a_recommender_with_its_registry_name(fitted: Baseline) -> None:
    assert isinstance(fitted, Recommender)
    assert fitted.name in {"pop", "itemknn", "sknn", "vsknn", "mf", "content"}


def test_score_covers_the_catalogue_with_padding_at_minus_inf(fitted: Baseline) -> None:
    scores = fitted.score([np.array([1, 2]), np.array([5]), np.array([3, 4, 6, 2])])
    assert scores.shape == (3, N_ITEMS + 1) and scores.dtype == np.float32
    assert np.isneginf(scores[:, 0]).all() and np.isfinite(scores[:, 1:]).all()


def test_cold_start_history_falls_back_to_popularity(fitted: Baseline) -> None:
    scores = fitted.score([np.array([], dtype=np.int32), np.array([0, 0]), np.array([42])])
    assert np.isfinite(scores[:, 1:]).all()
    assert (scores == scores[0]).all()  # empty, padding-only and unknown-only histories are the same
    assert np.argmax(scores[0]) in (2, 3)  # the most frequent training items (4 occurrences each)
    assert scores[0, 9] == scores[0, 1:].min()  # never seen in training: last


def test_empty_batch(fitted: Baseline) -> None:
    assert fitted.score([]).shape == (0, N_ITEMS + 1)


def test_scores_are_deterministic(fitted: Baseline, make_data: MakeData) -> None:
    again = type(fitted)().fit(make_data(SEQUENCES, N_ITEMS))
    histories = [np.array([1, 2]), np.array([7, 8])]
    assert np.array_equal(fitted.score(histories), again.score(histories))


def test_history_items_rank_last_unless_excluded(fitted: Baseline) -> None:
    scores = fitted.score([np.array([1, 2, 3])])[0]
    assert scores[[1, 2, 3]].max() < scores[4:].min()
    recs = fitted.recommend(np.array([1, 2, 3]), 20)
    assert {i for i, _ in recs} == set(range(4, N_ITEMS + 1))
    assert [s for _, s in recs] == sorted((s for _, s in recs), reverse=True)


def test_clean_histories_are_cleaned_once_per_catalogue() -> None:
    clean = clean_histories([np.array([0, 3, 9, 2]), [5]], n_items=5)
    assert [h.tolist() for h in clean] == [[3, 2], [5]]
    assert clean_histories(clean, n_items=5) is clean  # the pipeline's generators take them as they are
    assert [h.tolist() for h in clean_histories(clean[1:], n_items=5)] == [[5]]
    assert clean_histories(clean[:1], n_items=5)[0] is clean[0]
    assert [h.tolist() for h in clean_histories(clean, n_items=2)] == [[2], []]  # another catalogue: again
