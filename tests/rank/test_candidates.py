from __future__ import annotations

import numpy as np
import pytest

from streamrec.rank.candidates import union_top_n


def scores_of(*rows: list[float]) -> np.ndarray:
    out = np.array(rows, dtype=np.float32)
    out[:, 0] = -np.inf
    return out


def test_union_keeps_every_sources_evidence_and_orders_by_best_rank() -> None:
    a = scores_of([0, 5, 4, 3, 2, 1])  # top-2: 1, 2
    b = scores_of([0, 1, 2, 3, 4, 5])  # top-2: 5, 4
    cands = union_top_n({"a": a, "b": b}, {"a": 2, "b": 2})
    assert cands.sources == ("a", "b")
    # best ranks: 1 (a) and 5 (b) are both rank 1 -> lower index first; then 2 (a) and 4 (b)
    assert cands.items.tolist() == [[1, 5, 2, 4]]
    assert cands.ranks[0].tolist() == [[1, 0], [0, 1], [2, 0], [0, 2]]
    # every source's score is kept, proposer or not
    assert cands.scores[0].tolist() == [[5, 1], [1, 5], [4, 2], [2, 4]]
    assert cands.proposed_by(0, 1) == ("b",)


def test_excluded_items_are_never_proposed_and_short_rows_are_padded() -> None:
    a = scores_of([0, 5, 4, 3, 2, 1], [0, 5, 4, 3, 2, 1])
    cands = union_top_n({"a": a}, {"a": 3}, exclude=[np.array([1, 2]), np.array([], dtype=np.int64)])
    assert cands.items.tolist() == [[3, 4, 5], [1, 2, 3]]
    cands = union_top_n({"a": a, "b": a}, {"a": 2, "b": 0})
    assert cands.items.tolist() == [[1, 2], [1, 2]] and (cands.ranks[..., 1] == 0).all()


def test_rows_of_different_sizes_and_recall() -> None:
    a = scores_of([0, 5, 4, 3, 2, 1], [0, 5, 4, 3, 2, 1])
    b = scores_of([0, 5, 4, 3, 2, 1], [0, 1, 2, 3, 4, 5])
    cands = union_top_n({"a": a, "b": b}, {"a": 2, "b": 2})
    assert cands.items.tolist() == [[1, 2, 0, 0], [1, 5, 2, 4]]
    assert cands.mask.tolist() == [[True, True, False, False], [True, True, True, True]]
    assert (cands.scores[0, 2:] == 0).all() and (cands.ranks[0, 2:] == 0).all()
    assert cands.recall(np.array([2, 3])) == pytest.approx(0.5)


def test_needs_a_source() -> None:
    with pytest.raises(ValueError, match="at least one source"):
        union_top_n({}, {})
