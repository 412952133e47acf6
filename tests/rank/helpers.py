"""What "the same ranking" means when two computations round differently.

A batched product rounds a row differently with other rows beside it, and a folded ranker or an item
index computes a score another way: the scores then agree to float error, not bit for bit, and two
items whose scores tie to that error may come in either order. A test that asked for the same order
bit for bit failed a clean clone once (docs/serving-log.md, 2026-12-03, tenth session).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from streamrec.rank.pipeline import Recommendation

__all__ = ["assert_same_ranking", "scored"]


def scored(recs: Sequence[Recommendation]) -> list[tuple[int, float]]:
    """``(item, score)`` of each recommendation, as ``assert_same_ranking`` compares them."""
    return [(r.item, r.score) for r in recs]


def assert_same_ranking(got: Sequence[tuple[int, float]], want: Sequence[tuple[int, float]], *,
                        tol: float = 1e-5) -> None:
    """``got`` and ``want``, ``(item, score)`` best first: as many items, each score within ``tol``
    (relative and absolute) of the one wanted at its position, and the same item at every position,
    except where the wanted score ties, within ``tol``, with a neighbour's, or at the last position
    (which may tie with the first item left out)."""
    assert len(got) == len(want), (got, want)
    assert len({item for item, _ in got}) == len(got), got
    wanted_scores = [score for _, score in want]

    def ties(position: int) -> bool:
        return position == len(want) - 1 or any(
            0 <= other < len(want) and np.isclose(wanted_scores[other], wanted_scores[position], rtol=tol, atol=tol)
            for other in (position - 1, position + 1))

    for position, ((item, score), (wanted, wanted_score)) in enumerate(zip(got, want, strict=True)):
        assert np.isclose(score, wanted_score, rtol=tol, atol=tol), (position, got, want)
        assert item == wanted or ties(position), (position, got, want)
