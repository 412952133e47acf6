"""A batch served through retrieval proposes what the full scores propose, and scores any candidate
as the full scores do; the candidate stage takes it in place of a score matrix."""

from __future__ import annotations

import numpy as np

from streamrec.models.base import top_k
from streamrec.rank.candidates import union_top_n
from streamrec.retrieval.ann import AnnConfig, build_index
from streamrec.retrieval.source import Retrieved
from tests.retrieval.test_ann import clustered

N_ITEMS = 800


def _batch(exhaustive: bool = True) -> tuple[Retrieved, np.ndarray]:
    items = np.vstack([np.zeros((1, 16), np.float32), clustered(N_ITEMS)])  # row 0: padding
    sessions = clustered(6, seed=3)
    config = AnnConfig(nlist=8, nprobe=8 if exhaustive else 1)
    full = sessions @ items.T
    full[:, 0] = -np.inf
    return Retrieved(sessions, items, build_index(items[1:], config)), full.astype(np.float32)


def test_the_top_is_the_full_scores_top_with_the_seen_left_out() -> None:
    retrieved, full = _batch()
    seen = [np.array([], np.int64), *(top_k(full[b:b + 1], 5)[0][0][::2] for b in range(1, 6))]
    items, scores = retrieved.top(20, seen)
    want_items, want_scores = top_k(full, 20, seen)
    np.testing.assert_array_equal(items, want_items)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-4)
    assert not any(set(s.tolist()) & set(row.tolist()) for s, row in zip(seen, items, strict=True))


def test_rows_with_fewer_found_are_padded_with_item_0() -> None:
    retrieved, _ = _batch(exhaustive=False)  # one list of eight: about 100 items reachable
    items, scores = retrieved.top(N_ITEMS, None)
    assert items.shape == (6, N_ITEMS) and (items[:, -1] == 0).all() and np.isneginf(scores[:, -1]).all()
    found = items > 0
    assert (np.isfinite(scores) == found).all() and found.sum(1).min() > 0


def test_candidates_through_retrieval_equal_those_of_the_full_scores() -> None:
    retrieved, full = _batch()
    other = np.random.default_rng(5).random(full.shape).astype(np.float32)  # a second source, a matrix
    other[:, 0] = -np.inf
    seen = [np.array([3, 4], np.int64)] * 6
    n = {"seq": 30, "other": 30}
    through = union_top_n({"seq": retrieved, "other": other}, n, seen)
    scored = union_top_n({"seq": full, "other": other}, n, seen)
    np.testing.assert_array_equal(through.items, scored.items)
    np.testing.assert_array_equal(through.ranks, scored.ranks)
    np.testing.assert_allclose(through.scores, scored.scores, rtol=1e-4, atol=1e-4)
    assert retrieved.at(through.items).shape == through.items.shape
