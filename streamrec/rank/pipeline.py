"""The two-stage recommender as one object: generate candidates, rank them, re-rank.

It is a ``Recommender`` (``score`` over the whole catalogue), so ``streamrec evaluate`` measures
it exactly as it measures its members, and it has ``recommend`` for the server, which returns
the final items with their scores and the sources that proposed them. Both go through the same
``_ranked`` path, so what is evaluated is what is served.

Without a ranker the candidates are ordered by plain score fusion: the mean over sources of each
source's within-list z-score (CombSUM of normalised scores), the ablation the ranker must beat.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streamrec.models.base import Recommender, TrainData
from streamrec.models.recommend import clean_histories
from streamrec.rank.candidates import Candidates, union_top_n
from streamrec.rank.features import Features, ItemTable, SessionContext, build_features
from streamrec.rank.rerank import RerankConfig, allowed_many, mmr, top_allowed

__all__ = ["Pipeline", "Query", "RankerFn", "Recommendation"]

#: ``(sparse (N, F), multi (N, G), dense (N, D)) -> logits (N,)``: a torch DeepFM or its ONNX session.
RankerFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

_FLOOR = -1e6  # non-candidates sit below every candidate, ordered by popularity


@dataclass(frozen=True)
class Recommendation:
    item: int  # item index
    score: float
    sources: tuple[str, ...]  # the generators that proposed it


@dataclass(frozen=True)
class Query:
    """One session to recommend for: what ``Pipeline.recommend`` takes, as a value so that many
    can be answered by one batched pass (``recommend_many``)."""

    history: np.ndarray  # item indices, oldest first
    k: int
    context: SessionContext | None = None
    exclude: Collection[int] = ()  # item indices never shown
    rerank: RerankConfig | None = None  # None: the pipeline's rules


class Pipeline:
    """``generators`` are fitted ``Recommender``s by source name; ``n_per_source`` how many each proposes."""

    name = "pipeline"

    def __init__(self, generators: Mapping[str, Recommender], table: ItemTable, n_per_source: Mapping[str, int],
                 ranker: RankerFn | None = None, rerank: RerankConfig = RerankConfig()) -> None:
        missing = [s for s in n_per_source if s not in generators]
        if missing or not generators:
            raise ValueError(f"n_per_source names sources without a generator: {missing}")
        self.generators = dict(generators)
        self.table = table
        self.n_per_source = {s: int(n_per_source.get(s, 0)) for s in self.generators}
        self.ranker = ranker
        self.rerank = rerank

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.generators)

    def fit(self, data: TrainData) -> Pipeline:
        """Already assembled from fitted parts (see ``streamrec.offline.experiment``); checks the catalogue."""
        if data.n_items != self.table.n_items:
            raise ValueError(f"pipeline built for {self.table.n_items} items, data has {data.n_items}")
        return self

    # ---------------------------------------------------------------- stages

    def source_scores(self, histories: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return {name: np.asarray(g.score(histories), dtype=np.float32) for name, g in self.generators.items()}

    def candidates(self, scores: Mapping[str, np.ndarray], histories: Sequence[np.ndarray],
                   exclude_seen: bool | None = None) -> Candidates:
        exclude_seen = self.rerank.exclude_seen if exclude_seen is None else exclude_seen
        exclude = clean_histories(histories, self.table.n_items) if exclude_seen else None
        return union_top_n({s: scores[s] for s in self.sources}, self.n_per_source, exclude)

    def rank(self, cands: Candidates, features: Features) -> np.ndarray:
        """(B, C) float32 scores of the candidates, -inf on padding."""
        B, C = cands.items.shape
        if self.ranker is None:
            S = len(cands.sources)
            proposing = [i for i, s in enumerate(cands.sources) if self.n_per_source.get(s, 0) > 0] or list(range(S))
            scores = features.dense[..., proposing].mean(axis=-1)  # the z-score columns come first
        else:
            scores = np.asarray(self.ranker(*features.flat()), dtype=np.float32).reshape(B, C)
        return np.where(cands.mask, scores, -np.inf).astype(np.float32)

    def ranked(self, scores: Mapping[str, np.ndarray], histories: Sequence[np.ndarray],
               contexts: Sequence[SessionContext] | None = None,
               exclude_seen: bool | None = None) -> tuple[Candidates, np.ndarray]:
        cands = self.candidates(scores, histories, exclude_seen)
        return cands, self.rank(cands, build_features(cands, histories, self.table, contexts))

    # ---------------------------------------------------------------- the Recommender contract

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self.score_in_context(histories)

    def score_in_context(self, histories: Sequence[np.ndarray], times: Sequence[np.ndarray] | None = None,
                         now: np.ndarray | None = None) -> np.ndarray:
        """``score`` with each history's event times and the request time (for the recency feature)."""
        contexts = None
        if times is not None and now is not None:
            contexts = [SessionContext(times=t, now=float(n)) for t, n in zip(times, now, strict=True)]
        return self.scores_from(self.source_scores(histories), histories, contexts)

    def scores_from(self, scores: Mapping[str, np.ndarray], histories: Sequence[np.ndarray],
                    contexts: Sequence[SessionContext] | None = None) -> np.ndarray:
        """Full-catalogue scores from precomputed source scores: candidates by their ranking score,
        then every other item below them by popularity. Column 0 is -inf."""
        cands, ranked = self.ranked(scores, histories, contexts)
        B = len(histories)
        out = np.broadcast_to(_FLOOR + self.table.log_pop, (B, self.table.n_items + 1)).astype(np.float32)
        rows, cols = np.nonzero(cands.mask)
        out[rows, cands.items[rows, cols]] = ranked[rows, cols]
        out[:, 0] = -np.inf
        return out

    # ---------------------------------------------------------------- serving

    def recommend(self, history: np.ndarray, k: int, context: SessionContext | None = None,
                  exclude: Collection[int] = (), rerank: RerankConfig | None = None) -> list[Recommendation]:
        """The final top-``k`` for one session, after the re-ranking rules, best first."""
        return self.recommend_many([Query(history, k, context, exclude, rerank)])[0]

    def recommend_many(self, queries: Sequence[Query]) -> list[list[Recommendation]]:
        """``recommend`` for many sessions in one pass: each generator, the candidate union and the
        ranker run once over the batch, which costs far less per session than one call each.

        Row ``i``'s answer depends on query ``i`` only (padding is masked everywhere), so it is the
        answer ``recommend`` gives alone, up to the float rounding of batched matrix products.
        """
        if not queries:
            return []
        rules = [q.rerank or self.rerank for q in queries]
        histories = clean_histories([q.history for q in queries], self.table.n_items)
        empty = np.zeros(0, dtype=np.int64)
        exclude = [h if r.exclude_seen else empty for h, r in zip(histories, rules, strict=True)]
        scores = self.source_scores(histories)
        cands = union_top_n({s: scores[s] for s in self.sources}, self.n_per_source, exclude)
        contexts = [q.context or SessionContext() for q in queries]
        ranked = self.rank(cands, build_features(cands, histories, self.table, contexts))
        ok = allowed_many(cands.items, rules, histories, [q.exclude for q in queries])
        plain = top_allowed(ranked, ok, [q.k for q in queries])
        out = []
        for row, (q, r) in enumerate(zip(queries, rules, strict=True)):
            items, row_scores = cands.items[row], ranked[row]
            if r.diversity > 0 and q.k > 1:
                allowed_cols = np.flatnonzero(ok[row])
                picks = allowed_cols[mmr(row_scores[allowed_cols], self.table.genres[items[allowed_cols]], q.k,
                                         r.diversity)]
            else:
                picks = plain[row]
            out.append([Recommendation(int(i), float(s), src) for i, s, src in
                        zip(items[picks].tolist(), row_scores[picks].tolist(), cands.proposers(row, picks), strict=True)])
        return out
