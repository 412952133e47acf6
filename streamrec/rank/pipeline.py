"""The two-stage recommender as one object: generate candidates, rank them, re-rank.

It is a ``Recommender`` (``score`` over the whole catalogue), so ``streamrec evaluate`` measures
it exactly as it measures its members, and it has ``recommend``/``recommend_many`` for the server,
which return the final items with their scores and the sources that proposed them.

Both go through one private path, ``Pipeline._served`` (candidates, features, rank, then the
re-ranking rules and order), and ``score`` is derived from its output: the items it would show, in
the order it would show them, sit above every other item. So the top-k of ``score`` is what
``recommend`` returns for the same history and the pipeline's own rules: what is evaluated is what
is served, by construction rather than by two copies kept in step.

A sequence model published with the session contract is served through its item index when the
catalogue has more than ``retrieve_above`` items (``STREAMREC_RETRIEVAL_THRESHOLD``), and by its full
scores otherwise (``streamrec.retrieval``): the candidates are then its index's top-N, with their
exact scores.

Without a ranker the candidates are ordered by plain score fusion: the mean over sources of each
source's within-list z-score (CombSUM of normalised scores), the ablation the ranker must beat.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from streamrec.errors import ConfigError
from streamrec.models.base import Recommender, TrainData
from streamrec.models.recommend import clean_histories
from streamrec.rank.candidates import Candidates, union_top_n
from streamrec.rank.features import ItemTable, PairFeatures, SessionContext, pair_features
from streamrec.rank.rerank import RerankConfig, allowed_many, mmr, top_allowed
from streamrec.retrieval.source import Retrieved, Retriever

__all__ = ["PairRanker", "Pipeline", "Query", "RankerFn", "Recommendation"]

#: ``(sparse (N, F), multi (N, G), dense (N, D)) -> logits (N,)``: a torch DeepFM or its ONNX session.
RankerFn = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


@runtime_checkable
class PairRanker(Protocol):
    """A ranker that scores ``PairFeatures`` without their item-only columns expanded per candidate."""

    def score_pairs(self, pairs: PairFeatures) -> np.ndarray: ...  # float32 (B, C)

_FLOOR = -1e6  # in ``score``, items not shown sit below every shown item, ordered by popularity


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


@dataclass(frozen=True, eq=False)
class _Served:
    """The one path's output for a batch."""

    cands: Candidates
    ranked: np.ndarray  # float32 (B, C): ranking scores, before the rules
    picks: list[np.ndarray]  # per row, the candidate columns shown, in display order


class Pipeline:
    """``generators`` are fitted ``Recommender``s by source name; ``n_per_source`` how many each proposes."""

    name = "pipeline"

    def __init__(self, generators: Mapping[str, Recommender], table: ItemTable, n_per_source: Mapping[str, int],
                 ranker: RankerFn | PairRanker | None = None, rerank: RerankConfig = RerankConfig(),
                 retrieve_above: int | None = None) -> None:
        missing = [s for s in n_per_source if s not in generators]
        if missing or not generators:
            raise ConfigError(f"n_per_source names sources without a generator: {missing}")
        self.generators = dict(generators)
        self.table = table
        self.n_per_source = {s: int(n_per_source.get(s, 0)) for s in self.generators}
        self.ranker = ranker
        self.rerank = rerank
        self.retrieve_above = retrieve_above  # None: every source scores the whole catalogue
        self.retrieving = frozenset(  # decided once: a per-batch isinstance of a Protocol costs microseconds
            name for name, g in self.generators.items()
            if retrieve_above is not None and isinstance(g, Retriever) and g.n_items > retrieve_above)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.generators)

    def fit(self, data: TrainData) -> Pipeline:
        """Already assembled from fitted parts (see ``streamrec.offline.experiment``); checks the catalogue."""
        if data.n_items != self.table.n_items:
            raise ValueError(f"pipeline built for {self.table.n_items} items, data has {data.n_items}")
        return self

    # ---------------------------------------------------------------- stages

    def source_scores(self, histories: Sequence[np.ndarray]) -> dict[str, np.ndarray | Retrieved]:
        """Each source's full scores, or its ``Retrieved`` batch when it retrieves (``retrieve_above``)."""
        return {name: g.retrieve(histories) if name in self.retrieving  # type: ignore[attr-defined]
                else np.asarray(g.score(histories), dtype=np.float32) for name, g in self.generators.items()}

    def candidates(self, scores: Mapping[str, np.ndarray | Retrieved], histories: Sequence[np.ndarray],
                   exclude_seen: bool | None = None) -> Candidates:
        """The first stage alone, as the ranker is trained on it (``streamrec.offline.ranker_fit``)."""
        exclude_seen = self.rerank.exclude_seen if exclude_seen is None else exclude_seen
        hists = clean_histories(histories, self.table.n_items)
        return self._candidates(scores, hists, [exclude_seen] * len(hists))

    def rank(self, cands: Candidates, features: PairFeatures) -> np.ndarray:
        """(B, C) float32 scores of the candidates, -inf on padding. A ranker with ``score_pairs``
        (``streamrec.rank.folded.PerItemDeepFM``) reads ``features`` as they are; any other gets them in full."""
        B, C = cands.items.shape
        if self.ranker is None:
            S = len(cands.sources)
            proposing = [i for i, s in enumerate(cands.sources) if self.n_per_source.get(s, 0) > 0] or list(range(S))
            scores = features.pair_dense[..., proposing].mean(axis=-1)  # the z-score columns come first
        elif isinstance(self.ranker, PairRanker):
            scores = self.ranker.score_pairs(features)
        else:
            scores = np.asarray(self.ranker(*features.full(self.table).flat()), dtype=np.float32).reshape(B, C)
        return np.where(cands.mask, scores, -np.inf).astype(np.float32)

    def ranked(self, scores: Mapping[str, np.ndarray | Retrieved], histories: Sequence[np.ndarray],
               contexts: Sequence[SessionContext] | None = None,
               exclude_seen: bool | None = None) -> tuple[Candidates, np.ndarray]:
        """Candidates and their ranking scores, before the re-ranking rules: what the ranker is judged on."""
        exclude_seen = self.rerank.exclude_seen if exclude_seen is None else exclude_seen
        hists = clean_histories(histories, self.table.n_items)
        return self._ranked(scores, hists, contexts, [exclude_seen] * len(hists))

    # ---------------------------------------------------------------- the one path

    def _candidates(self, scores: Mapping[str, np.ndarray | Retrieved], histories: Sequence[np.ndarray],
                    exclude_seen: Sequence[bool]) -> Candidates:
        """``histories`` already clean; row ``i`` leaves its seen items out when ``exclude_seen[i]``."""
        empty = np.zeros(0, dtype=np.int64)
        exclude = [h if e else empty for h, e in zip(histories, exclude_seen, strict=True)]
        return union_top_n({s: scores[s] for s in self.sources}, self.n_per_source, exclude)

    def _ranked(self, scores: Mapping[str, np.ndarray | Retrieved], histories: Sequence[np.ndarray],
                contexts: Sequence[SessionContext] | None,
                exclude_seen: Sequence[bool]) -> tuple[Candidates, np.ndarray]:
        cands = self._candidates(scores, histories, exclude_seen)
        return cands, self.rank(cands, pair_features(cands, histories, self.table, contexts))

    def _served(self, scores: Mapping[str, np.ndarray | Retrieved], histories: Sequence[np.ndarray],
                contexts: Sequence[SessionContext] | None, rules: Sequence[RerankConfig],
                exclude: Sequence[Collection[int]], k: Sequence[int]) -> _Served:
        """What would be shown for each clean history: candidates, features, rank, then row ``i``'s
        ``rules[i]`` and ``exclude[i]`` and its first ``k[i]`` items in display order.

        Greedy MMR picks its first items the same whatever ``k``, so a longer ``k`` only extends the
        list (except ``diversity == 1`` with ``k == 1``, where one pick is plain relevance).
        """
        cands, ranked = self._ranked(scores, histories, contexts, [r.exclude_seen for r in rules])
        ok = allowed_many(cands.items, rules, histories, exclude)
        picks = top_allowed(ranked, ok, k)
        for row, (r, n) in enumerate(zip(rules, k, strict=True)):
            if r.diversity > 0 and n > 1:
                cols = np.flatnonzero(ok[row])
                picks[row] = cols[mmr(ranked[row, cols], self.table.genres[cands.items[row, cols]], n, r.diversity)]
        return _Served(cands, ranked, picks)

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

    def scores_from(self, scores: Mapping[str, np.ndarray | Retrieved], histories: Sequence[np.ndarray],
                    contexts: Sequence[SessionContext] | None = None) -> np.ndarray:
        """Full-catalogue scores from precomputed source scores: every item the pipeline's rules would
        show, by its ranking score and in display order, then every other item below them by
        popularity. Column 0 is -inf.

        A shown item keeps its ranking score unless that would contradict the display order (ties,
        or a diversified order): then it sits just below the item shown before it.
        """
        hists = clean_histories(histories, self.table.n_items)
        B = len(hists)
        every = [self.table.n_items] * B  # the whole display order, not only a top-k
        served = self._served(scores, hists, contexts, [self.rerank] * B, [()] * B, every)
        rows = np.repeat(np.arange(B), [len(p) for p in served.picks])  # one entry per shown item
        cols = np.concatenate(served.picks) if B else np.zeros(0, dtype=np.int64)
        out = np.broadcast_to(_FLOOR + self.table.log_pop, (B, self.table.n_items + 1)).astype(np.float32)
        out[rows, served.cands.items[rows, cols]] = _descending(served.ranked[rows, cols], rows)
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
        histories = clean_histories([q.history for q in queries], self.table.n_items)
        contexts = [q.context or SessionContext() for q in queries]
        rules = [q.rerank or self.rerank for q in queries]
        served = self._served(self.source_scores(histories), histories, contexts, rules,
                              [q.exclude for q in queries], [q.k for q in queries])
        cands, counts = served.cands, [len(p) for p in served.picks]
        rows, cols = np.repeat(np.arange(len(queries)), counts), np.concatenate(served.picks)
        shown = [Recommendation(int(i), float(s), src) for i, s, src in
                 zip(cands.items[rows, cols].tolist(), served.ranked[rows, cols].tolist(), cands.proposers(rows, cols),
                     strict=True)]
        ends = np.cumsum(counts).tolist()
        return [shown[end - n:end] for n, end in zip(counts, ends, strict=True)]


def _descending(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values`` (each row's in display order; ``rows`` sorted) made strictly decreasing within each
    row, changed only where they must be: lowered to the float32 just below their predecessor."""
    wrong = (rows[1:] == rows[:-1]) & ~(values[1:] < values[:-1])
    if not wrong.any():
        return values
    out = values.astype(np.float32, copy=True)
    for row in np.unique(rows[1:][wrong]):  # a lowered value may push its successors down too
        seg = out[np.searchsorted(rows, row):np.searchsorted(rows, row, side="right")]  # a view
        for j in range(1, len(seg)):
            if not seg[j] < seg[j - 1]:
                seg[j] = np.nextafter(seg[j - 1], np.float32(-np.inf))
    return out
