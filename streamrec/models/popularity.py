"""Most popular items, optionally with exponential recency decay: the floor every model must beat.

It ignores the history entirely, which is also why it is the cold-start fallback of the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streamrec.errors import ConfigError
from streamrec.models.arrays import State, check_rows, int_array, int_from, require
from streamrec.models.base import TrainData
from streamrec.models.recommend import RecommendMixin, clean_histories, demote_history

__all__ = ["MostPopular", "PopularityConfig"]

_DAY = 86_400.0


@dataclass(frozen=True, kw_only=True)
class PopularityConfig:
    # No decay by default: on ml-100k leave-one-out validation, half-lives of 3 to 180 days gave
    # HR@10 0.070-0.075 against 0.073 without, i.e. noise; there the held-out items spread over
    # the whole log, so "popular at its end" is no better a guess. Worth a try on time splits.
    half_life_days: float | None = None
    demote_history: bool = True  # see recommend.demote_history; False where users return to items

    def __post_init__(self) -> None:
        if self.half_life_days is not None and not self.half_life_days > 0:
            raise ConfigError(f"half_life_days must be positive or None (no decay), got {self.half_life_days}")


class MostPopular(RecommendMixin):
    """Interaction counts, each weighted ``0.5 ** (age / half_life)`` with age measured from the last
    training timestamp, so the scores reflect what is popular at the end of training."""

    name = "pop"

    def __init__(self, config: PopularityConfig = PopularityConfig()) -> None:
        self.config = config
        self.n_items = 0
        self.popularity = np.zeros(1, dtype=np.float64)

    def fit(self, data: TrainData) -> MostPopular:
        items = np.concatenate([np.asarray(s, dtype=np.int64) for s in data.sequences] or [np.zeros(0, np.int64)])
        stamps = np.concatenate([np.asarray(t, dtype=np.float64) for t in data.timestamps] or [np.zeros(0)])
        keep = (items >= 1) & (items <= data.n_items)
        items, stamps = items[keep], stamps[keep]
        weights = np.ones(len(items))
        if self.config.half_life_days is not None and len(items):
            age_days = (stamps.max() - stamps) / _DAY
            weights = 0.5 ** (age_days / self.config.half_life_days)
        self.n_items = data.n_items
        self.popularity = np.bincount(items, weights=weights, minlength=data.n_items + 1).astype(np.float64)
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        row = self.popularity.astype(np.float32)
        row[0] = -np.inf
        scores = np.broadcast_to(row, (len(histories), self.n_items + 1)).copy()
        if self.config.demote_history:
            demote_history(scores, clean_histories(histories, self.n_items))
        return scores

    def state(self) -> State:
        """What ``score`` reads, as plain arrays (``streamrec.models.arrays``)."""
        return {"n_items": int_array(self.n_items), "popularity": self.popularity}

    @classmethod
    def from_state(cls, config: PopularityConfig, state: Mapping[str, np.ndarray]) -> MostPopular:
        """The fitted model ``state()`` describes; its array is used as it is (never copied nor written)."""
        require(state, ("popularity",), cls.name)
        model = cls(config)
        model.n_items = int_from(state, "n_items")
        model.popularity = state["popularity"]
        check_rows(cls.name, model.n_items + 1, {"popularity": model.popularity})
        return model
