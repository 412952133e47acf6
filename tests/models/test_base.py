"""``top_k`` and its selection, ``first_k``: exactly a stable full sort, whatever the scores."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.models.base import first_k, top_k


def sorted_top_k(scores: np.ndarray, k: int, exclude: list[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The definition: a stable sort of the whole row, best first, ties by the lower item index."""
    negated = np.negative(scores, dtype=np.float32)
    negated[:, 0] = np.inf
    for row, items in enumerate(exclude or []):
        negated[row, np.asarray(items, dtype=np.int64)] = np.inf
    idx = np.argsort(negated, axis=1, kind="stable")[:, :min(k, scores.shape[1] - 1)]
    return idx, -np.take_along_axis(negated, idx, axis=1)


def scores_of(kind: str, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    x = rng.standard_normal(shape).astype(np.float32)
    if kind == "ties":  # popularity counts: many equal scores, some at the k-th place
        x = rng.integers(0, 4, shape).astype(np.float32)
    elif kind == "rounded":
        x = np.round(x, 1)
    elif kind == "ascending":  # the best items at the end of the row
        x = np.sort(x, axis=1)
    elif kind == "masked":  # -inf for items a source cannot score
        x[rng.random(shape) < 0.3] = -np.inf
    elif kind == "nan":
        x[rng.random(shape) < 0.05] = np.nan
    return x


@pytest.mark.parametrize("kind", ["normal", "ties", "rounded", "ascending", "masked", "nan"])
def test_top_k_is_the_stable_sort_of_the_whole_row(kind: str) -> None:
    rng = np.random.default_rng(sum(map(ord, kind)))
    for _ in range(60):
        n_items = int(rng.choice([1, 2, 4, 19, 99, 499, 3706, 5000]))
        rows, k = int(rng.integers(0, 33)), int(rng.integers(0, min(n_items, 300) + 3))
        scores = scores_of(kind, rng, (rows, n_items + 1))
        exclude = [rng.choice(np.arange(1, n_items + 1), int(rng.integers(0, min(n_items, 60) + 1)), replace=False)
                   for _ in range(rows)] if rng.random() < 0.5 else None
        got, want = top_k(scores, k, exclude), sorted_top_k(scores, k, exclude)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


def test_ties_at_the_kth_place_go_to_the_lower_items() -> None:
    scores = np.zeros((2, 3707), dtype=np.float32)
    scores[:, [3000, 10]] = 2.0  # every other item ties at 0
    idx, vals = top_k(scores, 5)
    assert idx.tolist() == [[10, 3000, 1, 2, 3]] * 2 and vals[:, 2:].tolist() == [[0.0] * 3] * 2


def test_a_row_whose_sample_holds_its_best_keys_is_still_exact() -> None:
    """Every 8th key (the sample) smaller than all the others: the threshold then leaves fewer than
    ``k`` survivors, and the row is sorted whole."""
    rng = np.random.default_rng(7)
    keys = rng.random((3, 4000)).astype(np.float32) + 1.0
    keys[:, ::8] -= 1.0
    np.testing.assert_array_equal(first_k(keys, 100), np.argsort(keys, axis=1, kind="stable")[:, :100])
