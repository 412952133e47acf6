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

__all__ = ["FoldedDeepFM", "fold_ranker"]

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
        H1 = self.hidden
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
        total = acc[:, H1:-1]  # (N, d) the sum of all field vectors
        fm = 0.5 * ((total * total).sum(axis=1) - squares)  # (N,) all pairwise dot products
        h = np.maximum(acc[:, :H1], 0.0)  # contiguous for the next product, and one pass instead of two
        for w, b in self.layers:
            h = h @ w
            if b is not None:
                h += b
                np.maximum(h, 0.0, out=h)
        return (self.bias + acc[:, -1] + fm + h[:, 0]).astype(np.float32)


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


def fold_ranker(ranker: Any, model_path: Path | bytes, *, seed: int = 0, rows: int = 512) -> Any:
    """A ``FoldedDeepFM`` of ``ranker`` (an ``OnnxRanker`` over ``model_path``, or the graph's checked
    bytes, ``OnnxRanker.graph``) when it reproduces the
    ONNX logits on a random sample of valid inputs; else ``ranker.score`` itself, with a warning."""
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
    return folded


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
