"""Session-kNN (SKNN) and its vector-multiplication variant (V-SKNN), after Ludewig & Jannach,
"Evaluation of session-based recommendation algorithms" (2018).

For each history: the training sessions that share an item with it are candidates; the
``sample_size`` most recent of them are kept; the ``k`` most similar of those are the
neighbours, and an item scores the summed similarity of the neighbours that contain it.

Both variants share all of that and differ in two hooks, so V-SKNN subclasses SKNN:

- SKNN: binary vectors on both sides, cosine similarity.
- V-SKNN: the history's items are weighted by position (linear: the last one 1, the first
  ``1/L``) and the similarity is the weighted dot product divided by the history's length;
  an item's score is multiplied by ``1 + idf_weight * idf(item)`` (idf over training sessions),
  which lifts items that are specific to the neighbours over those everybody has.

The batch is vectorised: history-session overlaps are one sparse product; training sessions
are stored in time order, so "most recent candidates" is "last entries of the row"; the top-k
is one lexsort, and scoring is a second sparse product.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Self

import numpy as np
import scipy.sparse as sp

from streamrec.errors import ArtifactError, ConfigError
from streamrec.models.arrays import State, check_rows, csr_from_arrays, csr_to_arrays, int_array, int_from, require
from streamrec.models.base import TrainData
from streamrec.models.recommend import (
    RecommendMixin,
    backfill,
    clean_histories,
    demote_history,
    history_matrix,
    item_counts,
)

__all__ = ["SKNN", "VSKNN", "SKNNConfig", "VSKNNConfig"]

_CHUNK = 512  # histories per sparse product: bounds memory of the (B, n_sessions) overlap matrix


@dataclass(frozen=True, kw_only=True)
class SKNNConfig:
    k: int = 100  # neighbour sessions
    sample_size: int = 500  # most recent candidate sessions searched for neighbours
    demote_history: bool = True  # see recommend.demote_history; False where users return to items

    def __post_init__(self) -> None:
        if self.k < 1 or self.sample_size < 1:
            raise ConfigError(f"k and sample_size must be >= 1, got {self.k}, {self.sample_size}")


@dataclass(frozen=True, kw_only=True)
class VSKNNConfig(SKNNConfig):
    idf_weight: float = 1.0  # 0 turns IDF weighting off

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.idf_weight < 0:
            raise ConfigError(f"idf_weight must be >= 0, got {self.idf_weight}")


class SKNN(RecommendMixin):
    name = "sknn"

    def __init__(self, config: SKNNConfig = SKNNConfig()) -> None:
        self.config = config
        self.n_items = 0
        self.counts = np.zeros(1)
        self.sessions = sp.csr_matrix((0, 1))  # (n_sessions, n_items + 1) binary, oldest session first
        self.sessions_t = sp.csr_matrix((1, 0))
        self.session_len = np.zeros(0)
        self.item_weight = np.ones(1)

    def fit(self, data: TrainData) -> SKNN:
        seqs = clean_histories(data.sequences, data.n_items)
        ends = np.array([np.max(t) if len(t) else -np.inf for t in data.timestamps], dtype=np.float64)
        keep = [i for i, s in enumerate(seqs) if len(s)]
        order = sorted(keep, key=lambda i: ends[i])  # stable: ties keep training order
        lengths = [len(seqs[i]) for i in order]
        rows = np.repeat(np.arange(len(order)), lengths)
        cols = np.concatenate([seqs[i] for i in order] or [np.zeros(0, np.int64)])
        size = data.n_items + 1
        sessions = sp.csr_matrix((np.ones(len(cols)), (rows, cols)), shape=(len(order), size))
        sessions.data[:] = 1.0  # a session holds an item once
        self.sessions = sessions
        self.sessions_t = sessions.T.tocsr()
        self.session_len = np.diff(sessions.indptr).astype(np.float64)
        self.item_weight = self._item_weight(np.diff(self.sessions_t.indptr), len(order))
        self.counts = item_counts(data)
        self.n_items = data.n_items
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        hists = clean_histories(histories, self.n_items)
        parts = [self._score_chunk(hists[i : i + _CHUNK]) for i in range(0, len(hists), _CHUNK)]
        if not parts:
            return np.zeros((0, self.n_items + 1), dtype=np.float32)
        return np.concatenate(parts)

    def state(self) -> State:
        """What ``score`` reads, as plain arrays (``streamrec.models.arrays``).

        The transposed sessions are stored although ``sessions.T.tocsr()`` rebuilds them exactly: stored,
        they are memory-mapped and shared by a server's processes instead of rebuilt in each (ML-1M:
        12 MB and 5 ms a process). The item weights too: they are a ``log``, whose last bit may
        differ between CPUs. Only the session lengths, integers, are derived at load.
        """
        return {"n_items": int_array(self.n_items), "counts": self.counts, "item_weight": self.item_weight,
                **csr_to_arrays("sessions", self.sessions), **csr_to_arrays("sessions_t", self.sessions_t)}

    @classmethod
    def from_state(cls, config: SKNNConfig, state: Mapping[str, np.ndarray]) -> Self:
        """The fitted model ``state()`` describes; its arrays are used as they are (never copied nor written).
        ``config`` is the class's own: a ``VSKNNConfig`` for ``VSKNN``."""
        require(state, ("counts", "item_weight"), cls.name)
        model = cls(config)
        model.n_items = int_from(state, "n_items")
        model.counts = state["counts"]
        model.item_weight = state["item_weight"]
        model.sessions = csr_from_arrays("sessions", state)
        model.sessions_t = csr_from_arrays("sessions_t", state)
        model.session_len = np.diff(model.sessions.indptr).astype(np.float64)
        check_rows(cls.name, model.n_items + 1, {"counts": model.counts, "item_weight": model.item_weight,
                                                 "sessions_t": model.sessions_t, "sessions.T": model.sessions.T})
        if model.sessions_t.shape != model.sessions.T.shape or model.sessions_t.nnz != model.sessions.nnz:
            raise ArtifactError(f"the state of {cls.name} is inconsistent: sessions_t is not the transpose of "
                                "sessions; re-export it")
        return model

    def _score_chunk(self, hists: list[np.ndarray]) -> np.ndarray:
        cfg = self.config
        h = history_matrix(hists, self.n_items, self._position_weights)
        overlap = (h @ self.sessions_t).tocsr()  # (B, n_sessions): which sessions share items, how much
        overlap.sort_indices()
        n_distinct = np.diff(h.indptr).astype(np.float64)
        row = np.repeat(np.arange(len(hists)), np.diff(overlap.indptr))
        col, val = overlap.indices, overlap.data
        # sessions are in time order, so the most recent candidates are each row's last entries
        from_end = np.repeat(overlap.indptr[1:], np.diff(overlap.indptr)) - np.arange(len(col))
        recent = from_end <= cfg.sample_size
        row, col, val = row[recent], col[recent], val[recent]
        sim = self._similarity(val, n_distinct[row], self.session_len[col])
        order = np.lexsort((-col, -sim, row))  # per row: most similar first, then most recent
        row, col, sim = row[order], col[order], sim[order]
        top = np.arange(len(row)) - np.searchsorted(row, row) < cfg.k
        neighbours = sp.csr_matrix((sim[top], (row[top], col[top])), shape=(len(hists), self.sessions.shape[0]))
        scores = (neighbours @ self.sessions).toarray() * self.item_weight[None, :]
        scores = backfill(scores, self.counts)
        return demote_history(scores, hists) if cfg.demote_history else scores

    # ---- the hooks V-SKNN overrides

    @staticmethod
    def _position_weights(length: int) -> np.ndarray:
        return np.ones(length)

    @staticmethod
    def _similarity(dot: np.ndarray, history_len: np.ndarray, session_len: np.ndarray) -> np.ndarray:
        return dot / np.sqrt(history_len * session_len)  # cosine of binary vectors

    def _item_weight(self, sessions_per_item: np.ndarray, n_sessions: int) -> np.ndarray:
        return np.ones(len(sessions_per_item))


class VSKNN(SKNN):
    name = "vsknn"
    config: VSKNNConfig

    def __init__(self, config: VSKNNConfig = VSKNNConfig()) -> None:
        super().__init__(config)

    @staticmethod
    def _position_weights(length: int) -> np.ndarray:
        return np.arange(1, length + 1, dtype=np.float64) / length

    @staticmethod
    def _similarity(dot: np.ndarray, history_len: np.ndarray, session_len: np.ndarray) -> np.ndarray:
        return dot / history_len

    def _item_weight(self, sessions_per_item: np.ndarray, n_sessions: int) -> np.ndarray:
        idf = np.log(max(n_sessions, 1) / np.maximum(sessions_per_item, 1))
        return 1.0 + self.config.idf_weight * idf
