"""Re-ranking: the business rules applied to a ranked candidate list, last, and nothing else.

Pure functions over arrays: which items may be shown (seen items, blocklist, allowlist), and an
optional genre diversification by maximal marginal relevance (Carbonell & Goldstein, 1998).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field

import numpy as np

from streamrec.errors import ConfigError

__all__ = ["RerankConfig", "allowed", "allowed_many", "mmr", "top_allowed"]


@dataclass(frozen=True, kw_only=True)
class RerankConfig:
    exclude_seen: bool = True  # MovieLens users rate a movie once; a shop may want repeats
    blocklist: frozenset[int] = field(default_factory=frozenset)  # item indices never shown
    allowlist: frozenset[int] | None = None  # when set, only these item indices are shown
    # 0 = rank by relevance only; 1 = diversity only. Trades relevance for genre variety.
    diversity: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.diversity <= 1.0:
            raise ConfigError(f"diversity must lie in [0, 1], got {self.diversity}")


def allowed(items: np.ndarray, config: RerankConfig, seen: Collection[int] = (),
            exclude: Collection[int] = ()) -> np.ndarray:
    """bool mask over ``items`` (int64 (C,)): real items that pass every rule."""
    return allowed_many(items[None, :], [config], [seen], [exclude])[0]


def allowed_many(items: np.ndarray, configs: Sequence[RerankConfig], seen: Sequence[Collection[int]],
                 exclude: Sequence[Collection[int]]) -> np.ndarray:
    """``allowed`` for each row of ``items`` (int64 (B, C)) under its own rules, seen and excluded items,
    in a few array operations for the whole batch rather than a few per row."""
    B, C = items.shape
    ok = items > 0
    banned = [list(e) + (list(s) if c.exclude_seen else []) for c, s, e in zip(configs, seen, exclude, strict=True)]
    lengths = [len(b) for b in banned]
    if sum(lengths):
        cols = np.fromiter((i for b in banned for i in b), dtype=np.int64, count=sum(lengths))
        width = int(max(items.max(initial=0), cols.max(initial=0))) + 1
        banned_cells = np.sort(np.repeat(np.arange(B, dtype=np.int64), lengths) * width + cols)
        cells = np.arange(B, dtype=np.int64)[:, None] * width + items
        found = banned_cells[np.minimum(np.searchsorted(banned_cells, cells), len(banned_cells) - 1)]
        ok &= found != cells  # np.isin, without its overhead at these sizes
    for config in {id(c): c for c in configs}.values():  # the catalogue-wide rules, once per distinct config
        rows = [b for b, c in enumerate(configs) if c is config]
        if config.blocklist:
            block = np.fromiter(config.blocklist, dtype=np.int64, count=len(config.blocklist))
            ok[rows] &= ~np.isin(items[rows], block)
        if config.allowlist is not None:
            allow = np.fromiter(config.allowlist, dtype=np.int64, count=len(config.allowlist))
            ok[rows] &= np.isin(items[rows], allow)
    return ok


def top_allowed(scores: np.ndarray, ok: np.ndarray, k: Sequence[int]) -> list[np.ndarray]:
    """Per row of ``scores`` (B, C), the positions of its ``k[b]`` best allowed entries, best first, ties
    to the lower position: ``mmr`` without diversity, for the whole batch in one sort."""
    order = np.lexsort((-scores, ~ok), axis=-1)  # allowed first, then by score, stable
    n_ok = ok.sum(axis=-1)
    return [order[b, :min(int(k[b]), int(n_ok[b]))] for b in range(len(order))]


def mmr(scores: np.ndarray, vectors: np.ndarray, k: int, diversity: float) -> np.ndarray:
    """Indices of ``k`` picks from ``scores`` (C,), greedily maximising
    ``(1 - diversity) * relevance - diversity * max cosine to the picks so far``.

    Relevance is the score min-max scaled to [0, 1], so the weight means the same for every
    ranker. ``vectors`` (C, G) are the candidates' genre vectors; with ``diversity == 0`` this is
    a plain top-k (ties to the lower position).
    """
    k = min(k, len(scores))
    if diversity == 0.0 or k <= 1:
        return np.argsort(-scores, kind="stable")[:k]
    lo, hi = float(scores.min()), float(scores.max())
    relevance = (scores - lo) / (hi - lo) if hi > lo else np.ones_like(scores)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors, dtype=np.float64), where=norms > 0)
    picks: list[int] = []
    max_sim = np.zeros(len(scores))
    free = np.ones(len(scores), dtype=bool)
    for _ in range(k):
        gain = np.where(free, (1.0 - diversity) * relevance - diversity * max_sim, -np.inf)
        best = int(np.argmax(gain))
        picks.append(best)
        free[best] = False
        max_sim = np.maximum(max_sim, unit @ unit[best])
    return np.asarray(picks, dtype=np.int64)
