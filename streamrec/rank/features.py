"""Features of (session, candidate) pairs for the ranker, as the three arrays DeepFM takes.

- ``sparse`` int64 (B, C, F): the candidate item, its year bucket, the session's last event
  type, how many sources proposed the candidate, and the session-length bucket.
- ``multi`` float32 (B, C, G): the candidate's genres, multi-hot.
- ``dense`` float32 (B, C, D), raw (DeepFM normalises them with statistics in its config): per
  source a within-list z-score of its score and the reciprocal of its rank (0 when it did not
  propose the item); then popularity (all training, and recent), session length and recency,
  and how close the candidate is to the session's last items (co-occurrence and genres).

Everything here is computed from arrays held by ``ItemTable``, built once from the training
data, so the same code serves offline evaluation and the server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from streamrec.errors import ArtifactError
from streamrec.events.schema import EVENT_TYPES
from streamrec.models.arrays import State, check_rows, csr_from_arrays, csr_to_arrays, int_array, int_from, require
from streamrec.models.base import TrainData
from streamrec.models.itemknn import ItemKNN, ItemKNNConfig
from streamrec.models.recommend import clean_histories
from streamrec.rank.candidates import Candidates

__all__ = ["DENSE_ITEM_FEATURES", "EVENT_TYPE_CODES", "ITEM_SPARSE", "PAIR_SPARSE", "SESSION_SPARSE", "Features",
           "ItemTable", "PairFeatures", "SessionContext", "build_features", "dense_groups", "dense_names",
           "item_columns", "pair_features", "sparse_sizes", "wide_crosses"]

#: 0 = unknown (offline logs have no event types); the rest in a fixed order.
EVENT_TYPE_CODES = {t: i + 1 for i, t in enumerate(sorted(EVENT_TYPES))}
#: the dense features after each source's two, by what they depend on: the item, the session, both
_ITEM_DENSE = ("log_pop", "log_recent_pop")
_SESSION_DENSE = ("log_session_length", "log_recency_h")
_PAIR_DENSE = ("sim_last", "sim_last3", "genre_cos_last5", "year_gap_last")
DENSE_ITEM_FEATURES = (*_ITEM_DENSE, *_SESSION_DENSE, *_PAIR_DENSE)
_YEAR_FIRST, _YEAR_WIDTH, _YEAR_BUCKETS = 1920, 5, 18
_LENGTH_BUCKETS = 12  # log2 buckets of the session length: 0, 1, 2-3, 4-7, ...
_RECENT_HALF_LIFE_S = 30 * 86_400.0
_LOOP_TERMS = 16  # _similarity_rows: up to this many (row, tail item) terms, a loop over them (measured crossover)


@dataclass(frozen=True)
class SessionContext:
    """What is known about a session besides its items: event times (seconds, one per history item),
    the time of the request, and the type of the last event. Any of them may be missing."""

    times: np.ndarray | None = None
    now: float | None = None
    last_type: str | None = None


@dataclass(frozen=True, eq=False)
class ItemTable:
    """Per-item arrays, indexed by item index (row 0 is padding)."""

    n_items: int
    genres: np.ndarray  # float32 (V, G) multi-hot
    genre_names: tuple[str, ...]
    year_bucket: np.ndarray  # int64 (V,), 0 = unknown
    year: np.ndarray  # float32 (V,), nan = unknown
    log_pop: np.ndarray  # float32 (V,)
    log_recent_pop: np.ndarray  # float32 (V,)
    similarity: sp.csr_matrix  # (V, V) item-item co-occurrence cosine

    @cached_property
    def genre_norm(self) -> np.ndarray:
        """float32 (V,): each item's genre vector's length, for the cosines of every request."""
        return np.linalg.norm(self.genres, axis=1)

    @classmethod
    def build(cls, data: TrainData, similarity: sp.csr_matrix | None = None) -> ItemTable:
        V = data.n_items + 1
        items = data.items
        idx = items["item_idx"].to_numpy(dtype=np.int64)
        ok = (idx >= 1) & (idx < V)
        lists = [[g for g in str(s).split("|") if g] for s in items["genres"].fillna("").to_numpy()[ok]]
        names = tuple(sorted({g for gs in lists for g in gs}))
        col = {g: j for j, g in enumerate(names)}
        genres = np.zeros((V, len(names)), dtype=np.float32)
        for row, gs in zip(idx[ok], lists, strict=True):
            genres[row, [col[g] for g in gs]] = 1.0
        year = np.full(V, np.nan, dtype=np.float32)
        year[idx[ok]] = np.asarray(items["year"].to_numpy(dtype=np.float64, na_value=np.nan))[ok]
        bucket = np.zeros(V, dtype=np.int64)
        known = np.isfinite(year)
        bucket[known] = 1 + np.clip((year[known] - _YEAR_FIRST) // _YEAR_WIDTH, 0, _YEAR_BUCKETS - 1).astype(np.int64)
        flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in data.sequences] or [np.zeros(0, np.int64)])
        stamps = np.concatenate([np.asarray(t, dtype=np.float64) for t in data.timestamps] or [np.zeros(0)])
        keep = (flat >= 1) & (flat < V)
        flat, stamps = flat[keep], stamps[keep]
        pop = np.bincount(flat, minlength=V).astype(np.float64)
        decay = 0.5 ** ((stamps.max(initial=0.0) - stamps) / _RECENT_HALF_LIFE_S) if len(stamps) else np.zeros(0)
        recent = np.bincount(flat, weights=decay, minlength=V)
        if similarity is None:
            similarity = ItemKNN(ItemKNNConfig()).fit(data).similarity
        return cls(data.n_items, genres, names, bucket, year, np.log1p(pop).astype(np.float32),
                   np.log1p(recent).astype(np.float32), sp.csr_matrix(similarity, dtype=np.float32))

    def state(self) -> State:
        """Every array, as plain arrays (``streamrec.models.arrays``). The genre names are strings and travel
        apart (in the manifest): ``from_state`` takes them back."""
        return {"n_items": int_array(self.n_items), "genres": self.genres, "year_bucket": self.year_bucket,
                "year": self.year, "log_pop": self.log_pop, "log_recent_pop": self.log_recent_pop,
                **csr_to_arrays("similarity", self.similarity)}

    @classmethod
    def from_state(cls, state: Mapping[str, np.ndarray], genre_names: Sequence[str]) -> ItemTable:
        """The table ``state()`` describes, with the genre names of its columns; its arrays are used as they
        are (never copied nor written)."""
        names = ("genres", "year_bucket", "year", "log_pop", "log_recent_pop")
        require(state, names, "the item table")
        n_items = int_from(state, "n_items")
        table = cls(n_items, state["genres"], tuple(genre_names), state["year_bucket"], state["year"],
                    state["log_pop"], state["log_recent_pop"], csr_from_arrays("similarity", state))
        check_rows("the item table", n_items + 1,
                   {**{n: getattr(table, n) for n in names}, "similarity": table.similarity})
        if table.genres.ndim != 2 or table.genres.shape[1] != len(table.genre_names):
            raise ArtifactError(f"the item table has {table.genres.shape[1:]} genre columns and "
                                f"{len(table.genre_names)} genre names; re-export it")
        return table


@dataclass(frozen=True, eq=False)
class Features:
    sparse: np.ndarray  # int64 (B, C, F)
    multi: np.ndarray  # float32 (B, C, G)
    dense: np.ndarray  # float32 (B, C, D)

    def flat(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The (N, ·) arrays DeepFM scores, N = B * C."""
        return (self.sparse.reshape(-1, self.sparse.shape[-1]), self.multi.reshape(-1, self.multi.shape[-1]),
                self.dense.reshape(-1, self.dense.shape[-1]))


def sparse_sizes(table: ItemTable, n_sources: int) -> tuple[int, ...]:
    """Cardinality of each sparse field, in ``build_features``' column order."""
    return (table.n_items + 1, _YEAR_BUCKETS + 1, len(EVENT_TYPE_CODES) + 1, n_sources + 1, _LENGTH_BUCKETS)


def dense_names(sources: Sequence[str]) -> tuple[str, ...]:
    return (*(f"{s}_z" for s in sources), *(f"{s}_rr" for s in sources), *DENSE_ITEM_FEATURES)


def wide_crosses(sources: Sequence[str]) -> tuple[tuple[str, str], ...]:
    """Wide & Deep's cross products for this layout (``WideDeepConfig.crosses``), chosen by what a
    ranker of proposals should weigh together and a sum of single features cannot:

    - for each source, its reciprocal rank x popularity: whether a source's top picks deserve trust
      depends on how popular they are (popularity's own picks are popular, item-kNN's first picks for
      a rare item are rare, and either can be right);
    - how many sources proposed the candidate x popularity: agreement on a blockbuster says less than
      agreement on a rare film;
    - genre x era (the year bucket): a taste for 1950s westerns is not the sum of one for westerns and
      one for the 1950s;
    - genre x the genre similarity to the session's last five items: which genres count when the
      session leans their way. (A cross with the last item's genre itself would need that genre as a
      field; this similarity carries it.)

    Dense features are bucketed by ``WideDeepConfig.dense_boundaries`` first."""
    names = dense_names(sources)
    pop, genre_sim = f"dense:{names.index('log_pop')}", f"dense:{names.index('genre_cos_last5')}"
    return (*((f"dense:{names.index(f'{s}_rr')}", pop) for s in sources), ("sparse:3", pop), ("multi", "sparse:1"),
            ("multi", genre_sim))


#: ``Features.sparse``'s columns by what they depend on: the candidate item alone, the session alone, or
#: both (``PairFeatures`` holds the last two; the first two are looked up in the ``ItemTable``).
ITEM_SPARSE, SESSION_SPARSE, PAIR_SPARSE = (0, 1), (2, 4), (3,)


def dense_groups(n_dense: int) -> dict[str, tuple[int, ...]]:
    """``Features.dense``'s ``n_dense`` columns (``dense_names``' order) by what they depend on, as for the
    sparse ones; the sources' columns (z-scores, then reciprocal ranks) come first and are the pair's."""
    at = n_dense - len(DENSE_ITEM_FEATURES)  # 2 per source
    session = at + len(_ITEM_DENSE)
    pair = session + len(_SESSION_DENSE)
    return {"item": tuple(range(at, session)), "session": tuple(range(session, pair)),
            "pair": (*range(at), *range(pair, n_dense))}


def item_columns(table: ItemTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every item's item-only inputs, indexed by item: sparse int64 (V, 2), multi float32 (V, G) and raw
    dense float32 (V, 2), in ``ITEM_SPARSE`` and ``dense_groups(·)["item"]`` order."""
    V = table.n_items + 1
    sparse = np.stack([np.arange(V, dtype=np.int64), table.year_bucket], axis=1)
    return sparse, table.genres, np.stack([table.log_pop, table.log_recent_pop], axis=1).astype(np.float32)


@dataclass(frozen=True, eq=False)
class PairFeatures:
    """The ranker's inputs without their item-only columns, which the ``ItemTable`` holds once per item
    rather than once per candidate: what the server builds (a ranker folded per item reads them as
    they are), and what ``full`` expands to the ``Features`` every ranker takes."""

    items: np.ndarray  # int64 (B, C), 0 on padding
    session_sparse: np.ndarray  # int64 (B, 2): SESSION_SPARSE's columns
    pair_sparse: np.ndarray  # int64 (B, C, 1): PAIR_SPARSE's
    session_dense: np.ndarray  # float32 (B, 2): dense_groups' "session" columns, raw
    pair_dense: np.ndarray  # float32 (B, C, 2S + 4): its "pair" columns, raw, 0 on padding; the z-scores first

    @property
    def mask(self) -> np.ndarray:
        return self.items > 0

    def full(self, table: ItemTable) -> Features:
        B, C = self.items.shape
        item_sparse, item_multi, item_dense = item_columns(table)
        sparse = np.empty((B, C, len(ITEM_SPARSE) + len(SESSION_SPARSE) + len(PAIR_SPARSE)), dtype=np.int64)
        sparse[..., ITEM_SPARSE] = item_sparse[self.items]
        sparse[..., SESSION_SPARSE] = self.session_sparse[:, None, :]
        sparse[..., PAIR_SPARSE] = self.pair_sparse
        groups = dense_groups(self.pair_dense.shape[-1] + len(_ITEM_DENSE) + len(_SESSION_DENSE))
        dense = np.empty((B, C, sum(map(len, groups.values()))), dtype=np.float32)
        dense[..., groups["item"]] = item_dense[self.items]
        dense[..., groups["session"]] = self.session_dense[:, None, :]
        dense[..., groups["pair"]] = self.pair_dense
        return Features(sparse, item_multi[self.items].astype(np.float32, copy=False), dense * self.mask[..., None])


def build_features(cands: Candidates, histories: Sequence[np.ndarray], table: ItemTable,
                   contexts: Sequence[SessionContext] | None = None) -> Features:
    return pair_features(cands, histories, table, contexts).full(table)


def pair_features(cands: Candidates, histories: Sequence[np.ndarray], table: ItemTable,
                  contexts: Sequence[SessionContext] | None = None) -> PairFeatures:
    B = len(cands.items)
    hists = clean_histories(histories, table.n_items)
    contexts = contexts if contexts is not None else [SessionContext()] * B
    mask = cands.mask  # (B, C)
    items = cands.items  # (B, C)

    # per-source evidence
    n = np.maximum(mask.sum(axis=1, keepdims=True), 1)[..., None]  # (B, 1, 1)
    s = cands.scores * mask[..., None]  # (B, C, S)
    mean = s.sum(axis=1, keepdims=True) / n
    std = np.sqrt((((s - mean) * mask[..., None]) ** 2).sum(axis=1, keepdims=True) / n)
    z = np.where(mask[..., None], (s - mean) / np.maximum(std, 1e-6), 0.0)  # (B, C, S)
    ranks = np.arange(int(cands.ranks.max(initial=0)) + 1)
    rr = np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0.0).astype(np.float32)[cands.ranks]  # (B, C, S)
    n_sources = (cands.ranks > 0).sum(axis=2)  # (B, C)

    # session
    lengths = np.array([len(h) for h in hists], dtype=np.int64)  # (B,)
    length_bucket = np.minimum(np.ceil(np.log2(lengths + 1)).astype(np.int64), _LENGTH_BUCKETS - 1)
    recency_h = np.array([_recency_hours(c) for c in contexts], dtype=np.float32)  # (B,)
    last_type = np.array([EVENT_TYPE_CODES.get(c.last_type or "", 0) for c in contexts], dtype=np.int64)
    last = np.array([h[-1] if len(h) else 0 for h in hists], dtype=np.int64)  # (B,)

    # closeness of the candidate to the last items
    rows = np.arange(B)[:, None]
    tails3 = [_distinct(h[-3:]) for h in hists]
    sim_last = _similarity_rows(table.similarity, [h[-1:] for h in hists], B)[rows, items]  # (B, C)
    sim_last3 = _similarity_rows(table.similarity, tails3, B)[rows, items]  # (B, C) mean over the last 3
    profile = _mean_rows(table.genres, [_distinct(h[-5:]) if len(h) else np.zeros(1, np.int64) for h in hists])
    profile /= np.maximum(np.linalg.norm(profile, axis=1, keepdims=True), 1e-6)
    genre_cos = np.einsum("bcg,bg->bc", table.genres[items], profile) / np.maximum(table.genre_norm[items], 1e-6)
    year_gap = np.abs(table.year[items] - table.year[last][:, None]) / 10.0
    year_gap = np.where(np.isfinite(year_gap), year_gap, 0.0)

    pair = np.concatenate([z, rr, np.stack([sim_last, sim_last3, genre_cos, year_gap], axis=-1)], axis=-1,
                          dtype=np.float32)
    return PairFeatures(items, np.stack([last_type, length_bucket], axis=1),
                        n_sources.astype(np.int64)[..., None],
                        np.stack([np.log1p(lengths), np.log1p(recency_h)], axis=1).astype(np.float32),
                        pair * mask[..., None])


def _distinct(items: np.ndarray) -> np.ndarray:
    """``np.unique`` of a few items, without its overhead (the tails here hold 1 to 5)."""
    return np.array(sorted(set(items.tolist())), dtype=np.int64)


def _mean_rows(table: np.ndarray, groups: Sequence[np.ndarray]) -> np.ndarray:
    """(B, ·): row ``b`` is the mean of ``table``'s rows ``groups[b]`` (each non-empty), in one gather."""
    if not groups:
        return np.zeros((0, table.shape[1]), dtype=table.dtype)
    counts = np.array([len(g) for g in groups])
    sums = np.add.reduceat(table[np.concatenate(groups)], np.cumsum(counts) - counts, axis=0)
    return sums / counts[:, None].astype(table.dtype)


def _recency_hours(context: SessionContext) -> float:
    """Hours from the session's last event to the request; 0 when either is unknown."""
    if context.now is None or context.times is None or not len(context.times):
        return 0.0
    return max(float(context.now) - float(context.times[-1]), 0.0) / 3600.0


def _similarity_rows(similarity: sp.csr_matrix, tails: Sequence[np.ndarray], B: int) -> np.ndarray:
    """(B, V) float32: row ``b`` is the mean of ``similarity``'s rows of ``tails[b]`` (0 when empty).

    Read straight from the CSR arrays, the ``j``-th item of every tail at once: within one ``j`` no
    cell is written twice, so each cell gets the same float32 additions, in the same order, as a loop
    over the rows would give it (and scipy's indexing costs more in checks than in arithmetic here).
    """
    out = np.zeros((B, similarity.shape[1]), dtype=np.float32)
    indptr, indices, data = similarity.indptr, similarity.indices, similarity.data
    lengths = np.array([len(t) for t in tails], dtype=np.int64)
    if lengths.sum() <= _LOOP_TERMS:  # a session or two: the loop costs less than building the index arrays
        for b, tail in enumerate(tails):
            for item in tail:
                lo, hi = indptr[item], indptr[item + 1]
                out[b, indices[lo:hi]] += data[lo:hi] / len(tail)
        return out
    for j in range(int(lengths.max(initial=0))):
        rows = np.flatnonzero(lengths > j)
        items = np.array([tails[b][j] for b in rows], dtype=np.int64)
        starts, counts = indptr[items], indptr[items + 1] - indptr[items]
        at = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        share = np.repeat(lengths[rows].astype(np.float32), counts)  # float32, as ``data / len(tail)`` divides
        out[np.repeat(rows, counts), indices[at]] += data[at] / share
    return out
