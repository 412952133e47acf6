"""Implicit-feedback matrix factorisation: ALS after Hu, Koren & Volinsky (2008), with fold-in scoring.

Why ALS rather than BPR: the user step of ALS *is* the fold-in we need at score time (histories
are sessions or held-out users, never training rows), so serving solves exactly the problem
training solved for its users, in closed form; ALS has no learning rate or negative sampling to
tune, is deterministic given the seed, and converges in a handful of sweeps.

Each sweep solves, for every row ``u`` with items ``I`` (confidence ``1 + alpha`` on ``I``, 1 elsewhere),
``x_u = (YᵀY + alpha · Y_Iᵀ Y_I + reg · I)⁻¹ (1 + alpha) Σ_{i∈I} y_i``: the Gramian ``YᵀY`` is shared.
Exactly, that costs ``O(|I| f²)`` per row, about two minutes per fit on ML-1M; training therefore
takes a few warm-started conjugate-gradient steps instead (Takács et al. 2011, as the ``implicit``
library does), ``O(|I| f)`` per step and batched over all rows, which brings ML-1M to seconds.
Fold-in at score time is always the exact solve: a handful of rows is cheap.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from streamrec.errors import ArtifactError, ConfigError
from streamrec.models.arrays import State, check_rows, int_array, int_from, require
from streamrec.models.base import TrainData
from streamrec.models.recommend import (
    RecommendMixin,
    clean_histories,
    decayed_weights,
    demote_history,
    item_counts,
)

__all__ = ["ALSConfig", "MatrixFactorization", "fold_in"]


@dataclass(frozen=True, kw_only=True)
class ALSConfig:
    factors: int = 64
    iterations: int = 15
    cg_steps: int | None = 3  # None: exact solves in training too (slow, but x_u is then exactly u's fold-in)
    reg: float = 1.0
    alpha: float = 10.0  # extra confidence of an observed item over an unobserved one
    # At score time a history item's confidence is 1 + alpha * fold_in_decay ** age (age 0 =
    # latest). 1.0 folds a history in exactly like a training row; 0.9 leans to the latest items,
    # which predict the next one: ml-100k leave-one-out validation HR@10 0.153 -> 0.193.
    fold_in_decay: float = 0.9
    demote_history: bool = True  # see recommend.demote_history; False where users return to items
    seed: int = 0

    def __post_init__(self) -> None:
        if self.factors < 1 or self.iterations < 1 or (self.cg_steps is not None and self.cg_steps < 1):
            raise ConfigError(f"factors, iterations and cg_steps must be >= 1, got {self}")
        if self.reg <= 0 or self.alpha <= 0:
            raise ConfigError(f"reg and alpha must be positive, got {self.reg}, {self.alpha}")
        if not 0 < self.fold_in_decay <= 1:
            raise ConfigError(f"fold_in_decay must be in (0, 1], got {self.fold_in_decay}")


class MatrixFactorization(RecommendMixin):
    """Scores a history by folding it in as a new user and taking ``Y x`` over the catalogue."""

    name = "mf"

    def __init__(self, config: ALSConfig = ALSConfig()) -> None:
        self.config = config
        self.n_items = 0
        self.counts = np.zeros(1)
        self.item_factors = np.zeros((1, config.factors))  # (n_items + 1, f); row 0 (padding) stays 0
        self.user_factors = np.zeros((0, config.factors))  # (n_sequences, f): the training rows, solved last
        self.gram = np.zeros((config.factors, config.factors))

    def fit(self, data: TrainData) -> MatrixFactorization:
        cfg = self.config
        seqs = clean_histories(data.sequences, data.n_items)
        size = data.n_items + 1
        rows = np.repeat(np.arange(len(seqs)), [len(s) for s in seqs])
        cols = np.concatenate(seqs or [np.zeros(0, np.int64)])
        users = sp.csr_matrix((np.ones(len(cols), np.float32), (rows, cols)), shape=(len(seqs), size))
        users.data[:] = 1.0
        items = users.T.tocsr()
        # float32 halves the memory traffic of the sweeps, which dominates their time; fold-in is float64
        y = np.random.default_rng(cfg.seed).normal(0.0, 0.01, (size, cfg.factors)).astype(np.float32)
        y[0] = 0.0
        x = np.zeros((len(seqs), cfg.factors), dtype=np.float32)
        x = _sweep(users, y, x, cfg)
        for _ in range(cfg.iterations - 1):
            y = _sweep(items, x, y, cfg)
            x = _sweep(users, y, x, cfg)  # ending on users: x_u is (with exact solves, exactly) u's fold-in
        self.item_factors, self.user_factors = y.astype(np.float64), x.astype(np.float64)
        self.gram = self.item_factors.T @ self.item_factors  # fold-in needs it for every history: compute once
        self.counts = item_counts(data)
        self.n_items = data.n_items
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        cfg = self.config
        hists = clean_histories(histories, self.n_items)
        users = fold_in(hists, self.item_factors, cfg.alpha, cfg.reg, cfg.fold_in_decay, gram=self.gram)
        scores = (users @ self.item_factors.T).astype(np.float32)
        empty = np.array([len(h) == 0 for h in hists], dtype=bool)
        scores[empty] = self.counts.astype(np.float32)  # cold start: nothing to fold in, so popularity
        scores[:, 0] = -np.inf
        return demote_history(scores, hists) if cfg.demote_history else scores

    def state(self) -> State:
        """What ``score`` reads, as plain arrays (``streamrec.models.arrays``): the item factors, their Gram
        matrix (stored, not recomputed: a BLAS product's last bits may differ between machines) and the
        counts of the cold start. The training rows' factors are not needed to score a history."""
        return {"n_items": int_array(self.n_items), "counts": self.counts, "item_factors": self.item_factors,
                "gram": self.gram}

    @classmethod
    def from_state(cls, config: ALSConfig, state: Mapping[str, np.ndarray]) -> MatrixFactorization:
        """The fitted model ``state()`` describes, without ``user_factors`` (empty); its arrays are used as
        they are (never copied nor written)."""
        require(state, ("counts", "item_factors", "gram"), cls.name)
        model = cls(config)
        model.n_items = int_from(state, "n_items")
        model.counts, model.item_factors, model.gram = state["counts"], state["item_factors"], state["gram"]
        check_rows(cls.name, model.n_items + 1, {"counts": model.counts, "item_factors": model.item_factors})
        f = config.factors
        if model.item_factors.shape[1:] != (f,) or model.gram.shape != (f, f):
            raise ArtifactError(f"the state of {cls.name} does not have {f} factors (config.factors): item_factors "
                                f"{model.item_factors.shape}, gram {model.gram.shape}; re-export it")
        return model


def fold_in(
    histories: Sequence[np.ndarray], y: np.ndarray, alpha: float, reg: float, decay: float = 1.0, chunk: int = 64,
    gram: np.ndarray | None = None,
) -> np.ndarray:
    """``(B, f)`` ALS user vectors for rows holding ``histories`` (oldest first), given item factors ``y``.

    The exact closed form of the user step. With ``decay < 1`` older items get less confidence
    (``1 + alpha * decay ** age``); a repeated item keeps its latest. An empty history gives zeros.
    Batched: histories are taken in order of length, ``chunk`` at a time, each padded with item 0
    (whose factor row is zero) to the longest in its chunk. ``gram`` is ``y.T @ y``, if known.
    """
    f = y.shape[1]
    base = (y.T @ y if gram is None else gram) + reg * np.eye(f)
    weights = decayed_weights(histories, y.shape[0] - 1, decay)
    all_lengths = np.diff(weights.indptr)
    by_length = np.argsort(all_lengths, kind="stable")
    out = np.zeros((len(histories), f))
    for lo in range(0, len(histories), chunk):
        rows = by_length[lo : lo + chunk]
        lengths = all_lengths[rows]
        if not lengths.sum():
            continue
        slots = np.arange(lengths.max())[None, :] < lengths[:, None]  # (C, L) real entries
        at = (weights.indptr[rows][:, None] + np.arange(slots.shape[1])[None, :])[slots]  # their CSR positions
        items = np.zeros(slots.shape, dtype=np.int64)
        conf = np.zeros(slots.shape)
        items[slots], conf[slots] = weights.items[at], alpha * weights.weights[at]
        yh = y[items]  # (C, L, f)
        a = base + np.matmul(yh.transpose(0, 2, 1) * conf[:, None, :], yh)  # (C, f, f)
        b = np.einsum("clf,cl->cf", yh, 1.0 + conf)  # padding rows of yh are zero
        out[rows] = np.linalg.solve(a, b[:, :, None])[:, :, 0]
    return out


def _sweep(rows: sp.csr_matrix, y: np.ndarray, x: np.ndarray, cfg: ALSConfig) -> np.ndarray:
    """New factors for every row of ``rows`` (binary, CSR) against the fixed factors ``y``.

    ``x`` (the previous factors) is the warm start of conjugate gradient; exact solves ignore it.
    """
    f = y.shape[1]
    base = y.T @ y + cfg.reg * np.eye(f, dtype=y.dtype)  # (f, f)
    b = (1.0 + cfg.alpha) * (rows @ y)  # (R, f)
    if cfg.cg_steps is None:
        out = np.zeros_like(b)
        for r in range(rows.shape[0]):
            yi = y[rows.indices[rows.indptr[r] : rows.indptr[r + 1]]]
            if len(yi):
                out[r] = np.linalg.solve(base + cfg.alpha * (yi.T @ yi), b[r])
        return out

    def apply(p: np.ndarray) -> np.ndarray:  # A_u p_u for every row at once
        dots = _sampled_dots(p, y, rows)  # p_u · y_i on the nonzeros
        return p @ base + cfg.alpha * (sp.csr_matrix((dots, rows.indices, rows.indptr), shape=rows.shape) @ y)

    x = x.copy()
    r = b - apply(x)
    p = r.copy()
    rs = np.einsum("rf,rf->r", r, r)
    for _ in range(cfg.cg_steps):
        ap = apply(p)
        step = rs / np.maximum(np.einsum("rf,rf->r", p, ap), 1e-30)
        x += step[:, None] * p
        r -= step[:, None] * ap
        rs_new = np.einsum("rf,rf->r", r, r)
        p = r + (rs_new / np.maximum(rs, 1e-30))[:, None] * p
        rs = rs_new
    return x


def _sampled_dots(p: np.ndarray, y: np.ndarray, pattern: sp.csr_matrix, budget: int = 1 << 22) -> np.ndarray:
    """``p_u · y_i`` for every nonzero ``(u, i)`` of ``pattern``, in CSR data order.

    Computed as dense blocks of ``p @ yᵀ`` (one BLAS call per block of rows, at most ``budget``
    entries) read at the nonzeros: several times faster than gathering ``(nnz, f)`` row copies.
    """
    out = np.empty(pattern.nnz, dtype=p.dtype)
    step = max(1, budget // max(y.shape[0], 1))
    for lo in range(0, pattern.shape[0], step):
        hi = min(lo + step, pattern.shape[0])
        a, b = pattern.indptr[lo], pattern.indptr[hi]
        local = np.repeat(np.arange(hi - lo), np.diff(pattern.indptr[lo : hi + 1]))
        out[a:b] = (p[lo:hi] @ y.T)[local, pattern.indices[a:b]]
    return out
