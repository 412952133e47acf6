"""The published DeepFM graph's arithmetic, refactored for serving: the same function, ~4x less work.

DeepFM's MLP starts with one ``Linear`` over the concatenation of all field vectors, (N, K·d) @
(K·d, H): for 26 fields of 16 that is 416·128 multiply-adds per candidate, most of DeepFM's cost.
But every field vector is either a table row (sparse fields), a fixed mix of table rows (the
multi-hot field) or a learned vector times a scalar (dense fields), so the product distributes:

- sparse field ``f``: ``emb[i] @ W_f`` is a row of the table ``emb @ W_f``, computed once at load;
- multi-hot field: ``(multi @ E / count) @ W_m = multi @ (E @ W_m) / count``;
- dense field ``j``: ``(x_j · e_j) @ W_j = x_j · (e_j @ W_j)``, so all of them are ``x @ M``, (D, H).

The FM part and the first-order weights distribute the same way. Nothing is approximated: the
logits equal the ONNX graph's up to float rounding, and ``fold_ranker`` checks that on a sample
before the folded scorer is used (otherwise it keeps the ONNX session and logs why).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.rank.features import (
    ITEM_SPARSE,
    PAIR_SPARSE,
    SESSION_SPARSE,
    ItemTable,
    PairFeatures,
    dense_groups,
    item_columns,
)

__all__ = ["DenseColumns", "FoldedDeepFM", "PerItemDeepFM", "fold_ranker"]

logger = logging.getLogger(__name__)

_TOLERANCE = 1e-3  # largest |logit difference| accepted against the ONNX graph; logits are O(1-10)
#: rows scored per pass: the (rows, H1 + d + 1) accumulator then stays in the core's cache while the
#: field rows are added into it (all candidates at once spill it to memory: about 2x the CPU at 32 sessions)
_CHUNK_ROWS = 1024


@dataclass(frozen=True, eq=False)
class FoldedDeepFM:
    """A ``RankerFn``: ``(sparse (N, F), multi (N, G), raw dense (N, D)) -> (N,)`` float32 logits.

    Per input, one row holds everything the model takes from it, ``H1 + d + 1`` wide: its share of
    layer 1's pre-activation, its FM vector and its first-order weight. Sparse fields gather rows of
    ``sparse_rows``; the multi-hot field (divided by its count) and the normalised dense features
    together multiply ``mixed_rows``. The FM also needs each input's squared vector norm.
    """

    offsets: np.ndarray  # int64 (F,): each sparse field's first row in the shared tables
    dense_mean: np.ndarray  # float32 (D,)
    dense_std: np.ndarray  # float32 (D,)
    sparse_rows: np.ndarray  # float32 (R, H1 + d + 1)
    sparse_sq: np.ndarray  # float32 (R,)
    mixed_rows: np.ndarray  # float32 (G + D, H1 + d + 1): the multi-hot values' rows, then the dense features'
    multi_emb: np.ndarray  # float32 (G, d): the multi field's vector is a mean, so its square is not linear
    dense_sq: np.ndarray  # float32 (D,)
    hidden: int  # H1; layer 1's bias is in the first sparse field's rows (every input has one of them)
    layers: tuple[tuple[np.ndarray, np.ndarray | None], ...]  # the rest of the MLP: (W (in, out), bias)
    bias: float

    @classmethod
    def from_weights(cls, weights: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> FoldedDeepFM:
        """``weights`` by the names of ``streamrec.models.deepfm.DeepFM``'s parameters (and ``dnn.out.weight``
        for the last, bias-free layer); ``config`` its config. Folded in float64, stored in float32."""
        sizes = np.asarray(config["sparse_sizes"], dtype=np.int64)
        F, D, d = len(sizes), int(config["n_dense"]), int(config["d_embed"])
        w1 = np.asarray(weights["dnn.0.weight"], dtype=np.float64).T  # (K·d, H1), K = F + 1 + D
        if w1.shape[0] != (F + 1 + D) * d:
            raise ValueError(f"layer 1 takes {w1.shape[0]} inputs, the config implies {(F + 1 + D) * d}")
        blocks = w1.reshape(F + 1 + D, d, -1)  # (K, d, H1)
        field_of_row = np.repeat(np.arange(F), sizes)  # (R,)
        emb = np.asarray(weights["sparse_emb.weight"], dtype=np.float64)  # (R, d)
        multi_emb = np.asarray(weights["multi_emb"], dtype=np.float64)  # (G, d)
        dense_emb = np.asarray(weights["dense_emb"], dtype=np.float64)  # (D, d)
        sparse_rows = np.concatenate([np.einsum("rd,rdh->rh", emb, blocks[field_of_row]), emb,
                                      np.asarray(weights["sparse_w.weight"], np.float64).reshape(-1, 1)], axis=1)
        sparse_rows[:sizes[0], :w1.shape[1]] += np.asarray(weights["dnn.0.bias"], np.float64)
        multi_rows = np.concatenate([multi_emb @ blocks[F], multi_emb,
                                     np.asarray(weights["multi_w"], np.float64).reshape(-1, 1)], axis=1)
        dense_rows = np.concatenate([np.einsum("jd,jdh->jh", dense_emb, blocks[F + 1:]), dense_emb,
                                     np.asarray(weights["dense_w.weight"], np.float64).reshape(-1, 1)], axis=1)
        layers = [(np.asarray(weights[f"dnn.{3 * i}.weight"], np.float32).T.copy(),
                   np.asarray(weights[f"dnn.{3 * i}.bias"], np.float32)) for i in range(1, len(config["hidden"]))]
        layers.append((np.asarray(weights["dnn.out.weight"], np.float32).reshape(-1, 1), None))
        f32 = np.float32
        return cls(offsets=(np.cumsum(sizes) - sizes).astype(np.int64),
                   dense_mean=np.asarray(config.get("dense_mean") or [0.0] * D, dtype=f32),
                   dense_std=np.asarray(config.get("dense_std") or [1.0] * D, dtype=f32),
                   sparse_rows=sparse_rows.astype(f32), sparse_sq=(emb ** 2).sum(axis=1).astype(f32),
                   mixed_rows=np.concatenate([multi_rows, dense_rows]).astype(f32), multi_emb=multi_emb.astype(f32),
                   dense_sq=(dense_emb ** 2).sum(axis=1).astype(f32),
                   hidden=w1.shape[1], layers=tuple(layers),
                   bias=float(np.asarray(weights["bias"])))

    def __call__(self, sparse: np.ndarray, multi: np.ndarray, dense: np.ndarray) -> np.ndarray:
        if len(sparse) <= _CHUNK_ROWS:
            return self._score(sparse, multi, dense)
        out = np.empty(len(sparse), dtype=np.float32)
        for lo in range(0, len(sparse), _CHUNK_ROWS):
            hi = lo + _CHUNK_ROWS
            out[lo:hi] = self._score(sparse[lo:hi], multi[lo:hi], dense[lo:hi])
        return out

    def _score(self, sparse: np.ndarray, multi: np.ndarray, dense: np.ndarray) -> np.ndarray:
        idx = sparse.astype(np.int64, copy=False) + self.offsets  # (N, F)
        multi = multi.astype(np.float32, copy=False)
        multi = multi / np.maximum(multi.sum(axis=1, keepdims=True), 1.0)  # (N, G) the mean's weights
        x = (dense.astype(np.float32, copy=False) - self.dense_mean) / self.dense_std  # (N, D)
        acc = np.concatenate([multi, x], axis=1) @ self.mixed_rows  # (N, H1 + d + 1)
        squares = (x * x) @ self.dense_sq  # (N,)
        for f in range(idx.shape[1]):  # one gather per field: cheaper than a (N, F, ·) gather and a sum
            acc += np.take(self.sparse_rows, idx[:, f], axis=0)
            squares += np.take(self.sparse_sq, idx[:, f])
        m = multi @ self.multi_emb  # (N, d)
        squares += (m * m).sum(axis=1)
        return self.finish(acc, squares)

    def finish(self, acc: np.ndarray, squares: np.ndarray) -> np.ndarray:
        """Logits from the summed rows ``acc`` (N, H1 + d + 1) and the inputs' summed squared norms (N,)."""
        H1 = self.hidden
        total = acc[:, H1:-1]  # (N, d) the sum of all field vectors
        fm = 0.5 * (np.einsum("nd,nd->n", total, total) - squares)  # (N,) all pairwise dot products
        h = _relu(acc[:, :H1])  # contiguous for the next product, and one pass instead of two
        for w, b in self.layers:
            h = h @ w
            if b is not None:
                h += b
                h = _relu(h, out=h)
        return (self.bias + acc[:, -1] + fm + h[:, 0]).astype(np.float32)


def _relu(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.maximum(x, 0)`` for a 2-d float32 ``x``, against a zeros array of its shape: numpy's SIMD loop
    takes two arrays, and against the scalar 0 the same maximum costs about 3x the CPU."""
    return np.maximum(x, np.zeros(x.shape, dtype=x.dtype), out=out)


@dataclass(frozen=True, eq=False)
class DenseColumns:
    """Some of the raw dense columns, with what the folded model takes from them: their normalisation,
    their rows (layer 1, FM vector, first-order weight) and their vectors' squared norms."""

    mean: np.ndarray  # float32 (P,)
    std: np.ndarray  # float32 (P,)
    rows: np.ndarray  # float32 (P, H1 + d + 1)
    sq: np.ndarray  # float32 (P,)

    @classmethod
    def of(cls, folded: FoldedDeepFM, columns: Sequence[int]) -> DenseColumns:
        cols, G = list(columns), folded.multi_emb.shape[0]
        return cls(folded.dense_mean[cols], folded.dense_std[cols], folded.mixed_rows[[G + j for j in cols]],
                   folded.dense_sq[cols])

    def normalised(self, raw: np.ndarray) -> np.ndarray:
        return (raw - self.mean) / self.std


@dataclass(frozen=True, eq=False)
class PerItemDeepFM:
    """``FoldedDeepFM`` with the inputs that depend on the candidate item alone summed once per item.

    Of a candidate's inputs, the item, its year bucket, its genres and its two popularities
    (``streamrec.rank.features.item_columns``) are the same in every list it appears in, so their
    rows are added up at load into one row per item: the server then gathers one row where it
    gathered two and multiplied 20 columns. The session's own inputs are summed once per batch (see
    ``score_pairs``). ``score_pairs`` reads the ``PairFeatures`` the server builds; called like any
    ``RankerFn`` (the full ``Features``) it is the ``FoldedDeepFM`` it holds.
    """

    folded: FoldedDeepFM
    item_rows: np.ndarray  # float32 (V, H1 + d + 1)
    item_sq: np.ndarray  # float32 (V,)
    session: DenseColumns  # the session's dense columns (dense_groups)
    pair: DenseColumns  # the pair's
    sizes: np.ndarray  # int64 (F,): each sparse field's number of values

    @classmethod
    def build(cls, folded: FoldedDeepFM, table: ItemTable) -> PerItemDeepFM:
        f, G = folded, folded.multi_emb.shape[0]
        groups = dense_groups(len(f.dense_mean))
        sparse, multi, raw = item_columns(table)
        idx = sparse + f.offsets[list(ITEM_SPARSE)]  # (V, 2)
        rows = f.sparse_rows.astype(np.float64)[idx].sum(axis=1)  # (V, W)
        squares = f.sparse_sq.astype(np.float64)[idx].sum(axis=1)  # (V,)
        weights = multi / np.maximum(multi.sum(axis=1, keepdims=True), 1.0)  # the genres' mean
        m = weights @ f.multi_emb.astype(np.float64)  # (V, d)
        item = DenseColumns.of(f, groups["item"])
        x = item.normalised(raw)  # (V, 2)
        rows += weights @ f.mixed_rows[:G].astype(np.float64) + x @ item.rows.astype(np.float64)
        squares += (m * m).sum(axis=1) + (x * x) @ item.sq
        return cls(folded, rows.astype(np.float32), squares.astype(np.float32), DenseColumns.of(f, groups["session"]),
                   DenseColumns.of(f, groups["pair"]), np.diff(f.offsets, append=len(f.sparse_rows)))

    def __call__(self, sparse: np.ndarray, multi: np.ndarray, dense: np.ndarray) -> np.ndarray:
        return self.folded(sparse, multi, dense)

    def score_pairs(self, pairs: PairFeatures) -> np.ndarray:
        """float32 (B, C) logits; padding columns are scored as item 0 and mean nothing.

        The session's rows and those of the pair's sparse field (how many sources proposed the
        candidate: a handful of values) are added up per batch into one table of (session, value)
        rows, so each candidate gathers two rows in all: its item's and its (session, value)'s.
        """
        f = self.folded
        B, C = pairs.items.shape
        if not B:
            return np.zeros((0, C), dtype=np.float32)
        session = pairs.session_sparse + f.offsets[list(SESSION_SPARSE)]  # (B, 2)
        x = self.session.normalised(pairs.session_dense)
        rows = f.sparse_rows[session].sum(axis=1) + x @ self.session.rows  # (B, W)
        sq = f.sparse_sq[session].sum(axis=1) + (x * x) @ self.session.sq  # (B,)
        values = np.zeros((B, C), dtype=np.int64)  # each candidate's row of the (session, value) table
        for field in PAIR_SPARSE:  # add each pair field's rows to the table, whose rows multiply by its values
            lo, size = int(f.offsets[field]), int(self.sizes[field])
            rows = (rows[:, None, :] + f.sparse_rows[lo:lo + size][None, :, :]).reshape(-1, rows.shape[-1])
            sq = (sq[:, None] + f.sparse_sq[lo:lo + size][None, :]).reshape(-1)
            values = values * size + pairs.pair_sparse[..., PAIR_SPARSE.index(field)]
        values += (np.arange(B) * (len(rows) // B))[:, None]
        out = np.empty((B, C), dtype=np.float32)
        step = max(1, _CHUNK_ROWS // max(C, 1))  # whole sessions per pass, about _CHUNK_ROWS rows
        for lo in range(0, B, step):
            hi = min(lo + step, B)
            items, row = pairs.items[lo:hi].reshape(-1), values[lo:hi].reshape(-1)
            acc = np.take(self.item_rows, items, axis=0)  # (n, W)
            acc += np.take(rows, row, axis=0)
            squares = np.take(self.item_sq, items) + np.take(sq, row)
            x = self.pair.normalised(pairs.pair_dense[lo:hi].reshape(len(items), -1))
            acc += x @ self.pair.rows
            squares += (x * x) @ self.pair.sq
            out[lo:hi] = f.finish(acc, squares).reshape(hi - lo, C)
        return out


def _onnx_weights(model_path: Path | bytes, config: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The DeepFM parameters among the graph's initializers. The bias-free last layer and ``dense_w``
    are exported under generated names (``onnx::MatMul_N``), so they are told apart by shape."""
    import onnx
    from onnx import numpy_helper

    graph = (onnx.load_model_from_string(model_path) if isinstance(model_path, bytes)
             else onnx.load(str(model_path))).graph
    found = {i.name.removeprefix("model."): numpy_helper.to_array(i) for i in graph.initializer}
    unnamed = {k: v for k, v in found.items() if k.startswith("onnx::")}
    D, last = int(config["n_dense"]), int(config["hidden"][-1])
    if D == last or len(unnamed) != 2:
        raise ValueError("cannot tell the graph's unnamed weights apart")
    for value in unnamed.values():
        found["dense_w.weight" if value.shape == (D, 1) else "dnn.out.weight"] = value
    return found


def fold_ranker(ranker: Any, model_path: Path | bytes, table: ItemTable | None = None, *, seed: int = 0,
                rows: int = 512) -> Any:
    """A ``FoldedDeepFM`` of ``ranker`` (an ``OnnxRanker`` over ``model_path``, or the graph's checked
    bytes, ``OnnxRanker.graph``) when it reproduces the ONNX logits on a random sample of valid inputs;
    else ``ranker.score`` itself, with a warning. With the release's item ``table``, a ``PerItemDeepFM``
    of it when that reproduces them too (else the ``FoldedDeepFM``, with a warning)."""
    config = ranker.manifest.get("config", {})
    try:
        folded = FoldedDeepFM.from_weights(_onnx_weights(model_path, config), config)
        sample = _sample(config, rows, seed)
        gap = float(np.max(np.abs(folded(*sample) - ranker.score(*sample))))
    except (ImportError, KeyError, ValueError, TypeError) as exc:
        logger.warning("ranker not folded event=fold_skipped reason=%s: %s", type(exc).__name__, exc)
        return ranker.score
    if not gap <= _TOLERANCE:
        logger.warning("ranker not folded event=fold_skipped reason=mismatch max_abs_diff=%s", gap)
        return ranker.score
    logger.info("ranker folded event=ranker_folded max_abs_diff=%.2e", gap)
    return folded if table is None else _per_item(folded, ranker, table, config, rows, seed)


def _per_item(folded: FoldedDeepFM, ranker: Any, table: ItemTable, config: Mapping[str, Any], rows: int,
              seed: int) -> FoldedDeepFM | PerItemDeepFM:
    try:
        per_item = PerItemDeepFM.build(folded, table)
        pairs = _sample_pairs(config, table, rows, seed)
        gap = float(np.max(np.abs(per_item.score_pairs(pairs).ravel() - ranker.score(*pairs.full(table).flat()))))
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        logger.warning("ranker not folded per item event=per_item_skipped reason=%s: %s", type(exc).__name__, exc)
        return folded
    if not gap <= _TOLERANCE:
        logger.warning("ranker not folded per item event=per_item_skipped reason=mismatch max_abs_diff=%s", gap)
        return folded
    logger.info("ranker folded per item event=ranker_per_item max_abs_diff=%.2e", gap)
    return per_item


def _sample(config: Mapping[str, Any], rows: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    sizes: Sequence[int] = config["sparse_sizes"]
    sparse = np.stack([rng.integers(0, s, rows) for s in sizes], axis=1).astype(np.int64)
    multi = (rng.random((rows, int(config["n_multi"]))) < 0.15).astype(np.float32)
    D = int(config["n_dense"])
    mean = np.asarray(config.get("dense_mean") or [0.0] * D)
    std = np.asarray(config.get("dense_std") or [1.0] * D)
    dense = (mean + std * rng.standard_normal((rows, D))).astype(np.float32)
    return sparse, multi, dense


def _sample_pairs(config: Mapping[str, Any], table: ItemTable, rows: int, seed: int) -> PairFeatures:
    """Random ``PairFeatures`` of valid values: 8 sessions of real items (none padding)."""
    rng = np.random.default_rng(seed + 1)
    sparse, _, dense = _sample(config, rows, seed + 1)
    sizes: Sequence[int] = config["sparse_sizes"]
    B, C = 8, max(1, rows // 8)
    groups = dense_groups(int(config["n_dense"]))
    items = rng.integers(1, table.n_items + 1, (B, C))
    session = np.stack([rng.integers(0, sizes[f], B) for f in SESSION_SPARSE], axis=1)
    return PairFeatures(items, session, sparse[:B * C, list(PAIR_SPARSE)].reshape(B, C, -1),
                        dense[:B, list(groups["session"])], dense[:B * C, list(groups["pair"])].reshape(B, C, -1))
