from __future__ import annotations

import numpy as np
import pytest

from streamrec.errors import ConfigError
from streamrec.rank.rerank import RerankConfig, allowed, mmr


def test_allowed_applies_seen_blocklist_allowlist_and_request_exclusions() -> None:
    items = np.array([1, 2, 3, 4, 5, 0])
    assert allowed(items, RerankConfig(), seen=[2]).tolist() == [True, False, True, True, True, False]
    assert allowed(items, RerankConfig(exclude_seen=False), seen=[2]).tolist()[:5] == [True] * 5
    rules = RerankConfig(blocklist=frozenset({1}), allowlist=frozenset({1, 3, 4}))
    assert allowed(items, rules, exclude=[4]).tolist() == [False, False, True, False, False, False]


def test_mmr_without_diversity_is_the_top_k() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.9])
    assert mmr(scores, np.eye(4), 3, 0.0).tolist() == [1, 3, 2]


def test_mmr_trades_relevance_for_genre_variety() -> None:
    scores = np.array([1.0, 0.95, 0.9, 0.2])
    genres = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], dtype=float)  # three dramas, one comedy
    assert mmr(scores, genres, 2, 0.0).tolist() == [0, 1]
    assert mmr(scores, genres, 2, 0.5).tolist() == [0, 3]
    assert len(set(mmr(scores, genres, 4, 0.5).tolist())) == 4


def test_diversity_weight_is_checked() -> None:
    with pytest.raises(ConfigError, match="diversity"):
        RerankConfig(diversity=1.5)
