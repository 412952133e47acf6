from __future__ import annotations

import numpy as np
import pytest

from streamrec.errors import ConfigError
from streamrec.models.base import top_k
from streamrec.rank.candidates import Candidates, union_top_n


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
    with pytest.raises(ConfigError, match="at least one source"):
        union_top_n({}, {})


def dense_union(scores: dict[str, np.ndarray], n: dict[str, int], exclude: list[np.ndarray] | None) -> Candidates:
    """The definition, the slow way: ranks in a (S, B, V) array, every row's items sorted by best rank."""
    sources = tuple(scores)
    B, V = scores[sources[0]].shape
    rank = np.zeros((len(sources), B, V), dtype=np.int32)
    for s, name in enumerate(sources):
        if n[name] > 0:
            idx, vals = top_k(scores[name], n[name], exclude)
            for b in range(B):
                for j in np.flatnonzero(np.isfinite(vals[b])):
                    rank[s, b, idx[b, j]] = j + 1
    rows = []
    for b in range(B):
        best = {v: int(rank[rank[:, b, v] > 0, b, v].min()) for v in range(V) if (rank[:, b, v] > 0).any()}
        rows.append(sorted(best, key=lambda v: (best[v], v)))
    width = max(max((len(r) for r in rows), default=0), 1)
    items = np.array([r + [0] * (width - len(r)) for r in rows], dtype=np.int64).reshape(B, width)
    real = items > 0
    cand = np.stack([np.take_along_axis(scores[s], items, axis=1) for s in sources], axis=-1)
    cand = np.where(real[..., None] & np.isfinite(cand), cand, 0.0).astype(np.float32)
    ranks = np.moveaxis(rank[:, np.arange(B)[:, None], items], 0, -1) * real[..., None]
    return Candidates(sources, items, cand, ranks.astype(np.int32))


def test_the_union_matches_its_definition_on_random_ties_and_exclusions() -> None:
    rng = np.random.default_rng(0)
    for trial in range(150):
        B, V, S = int(rng.integers(1, 6)), int(rng.integers(2, 40)), int(rng.integers(1, 4))
        scores = {f"s{i}": rng.integers(0, 4, size=(B, V)).astype(np.float32) for i in range(S)}  # many ties
        for a in scores.values():
            a[rng.random(a.shape) < 0.2] = -np.inf
            a[:, 0] = -np.inf
        n = {s: int(rng.integers(0, 8)) for s in scores}
        exclude = [rng.integers(0, V, size=int(rng.integers(0, 4))) for _ in range(B)] if trial % 2 else None
        got, want = union_top_n(scores, n, exclude), dense_union(scores, n, exclude)
        for field in ("items", "scores", "ranks"):
            a, b = getattr(got, field), getattr(want, field)
            assert a.dtype == b.dtype and np.array_equal(a, b), (trial, field)
