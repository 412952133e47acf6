"""Top-k items by inner product without scoring the whole catalogue: an approximate nearest-neighbour
index over the item embeddings (YouTube's candidate generation), and the exact product it replaces.

A sequence model with tied output embeddings scores item ``i`` for a session as ``session · items[i]``
(a bias goes in as one more column: the models' ``session`` and ``item_vectors``). Exact retrieval is one matrix
product and a partial sort over all N items: cheap at MovieLens's 3,706 items, megabytes and
milliseconds at 10⁶. An index answers from a small part of the catalogue instead.

The largest inner products are not the nearest neighbours when norms differ, and indexes built for
distances find them badly (recall@500 of 0.50 with faiss's inner-product IVF where the same lists
found 0.94 after the change below, measured on a synthetic catalogue of 10⁵). So every item gets one
more coordinate, ``sqrt(M² - |x|²)`` with M the largest norm, and every query a 0 (Bachrach et al.,
RecSys 2014): all items then have norm M, and ``|q - x|² = |q|² + M² - 2 q·x``, so the nearest in
Euclidean distance are the largest inner products, and the scores come back from the distances.

- ``ivf`` (faiss ``IndexIVFFlat``): the items are split into ``nlist`` clusters by k-means; a query
  measures the centroids, then the items of its ``nprobe`` nearest clusters, exactly. The index holds
  the float32 vectors and their ids: about N·(d+1)·4 + N·8 bytes.
- ``hnsw`` (faiss ``IndexHNSWFlat``) and ``usearch`` (usearch's HNSW): a graph walked greedily from
  an entry point, ``ef_search`` candidates kept; ``m`` links per item cost about N·m·8 bytes more.

``streamrec bench catalog`` measured the three on this machine (docs/operations.md, "Catalogue
scale"); ``ivf`` is the default. An index is saved as one file whose sha256 the caller records
(with ``max_norm``), and refused on load when the bytes differ, as a model is.

Seen items are filtered after retrieval, by over-fetching (``streamrec.retrieval.source``).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from streamrec.errors import ConfigError, LoadError

__all__ = ["KINDS", "AnnConfig", "ItemIndex", "Kind", "build_index", "exact_top_k", "load_index", "recall_at"]

Kind = Literal["ivf", "hnsw", "usearch"]  # one backend each
KINDS: tuple[Kind, ...] = ("ivf", "hnsw", "usearch")


@dataclass(frozen=True)
class AnnConfig:
    kind: Kind = "ivf"
    nlist: int | None = None  # ivf: clusters; None: about 2·√N, at least 1, at most N / 39
    nprobe: int = 64  # ivf: clusters scored per query (recall@500 0.98 at 10⁶ items, p50 0.5 ms: bench catalog)
    train_size: int = 100_000  # ivf: items sampled to train the clusters
    m: int = 32  # hnsw, usearch: links per item
    ef_construction: int = 128  # hnsw, usearch: candidates kept while inserting
    ef_search: int = 640  # hnsw, usearch: candidates kept while searching (>= k)
    build_threads: int = 0  # 0: every core
    search_threads: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown index kind {self.kind!r}; one of {', '.join(KINDS)}")
        if min(self.nprobe, self.train_size, self.m, self.ef_construction, self.ef_search, self.search_threads) < 1 \
                or (self.nlist is not None and self.nlist < 1) or self.build_threads < 0:
            raise ConfigError(f"an index needs positive sizes and threads, got {self}")

    def lists_for(self, n: int) -> int:
        """IVF clusters for ``n`` items: faiss wants 39 training points per centroid at least."""
        wanted = self.nlist if self.nlist is not None else 2 * round(math.sqrt(n))
        return max(1, min(wanted, n // 39))


class _Backend(Protocol):
    """Over the lifted vectors: squared Euclidean distances and ids, nearest first."""

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...
    def nbytes(self) -> int: ...
    def to_bytes(self) -> bytes: ...


@dataclass
class ItemIndex:
    """An index over ``n`` item vectors of ``dim`` dimensions (ids are the rows' positions), stored
    with the extra coordinate that makes their norms all ``max_norm``."""

    backend: _Backend
    n: int
    dim: int
    max_norm: float
    config: AnnConfig

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """``(B, k)`` float32 scores (inner products, best first) and int64 ids; -1 where fewer were found."""
        queries = _float32_rows(queries, self.dim, "queries")
        distances, ids = self.backend.search(np.hstack([queries, np.zeros((len(queries), 1), np.float32)]),
                                             min(k, self.n))
        scores = ((queries * queries).sum(1, keepdims=True) + self.max_norm ** 2 - distances) / 2
        return np.where(ids >= 0, scores, -np.inf).astype(np.float32), ids

    def nbytes(self) -> int:
        return self.backend.nbytes()

    def save(self, path: Path) -> str:
        """Write the index to ``path``; returns its sha256, to record beside it with ``max_norm``."""
        data = self.backend.to_bytes()
        Path(path).write_bytes(data)
        return hashlib.sha256(data).hexdigest()


def build_index(items: np.ndarray, config: AnnConfig = AnnConfig()) -> ItemIndex:
    items = _float32_rows(items, None, "items")
    n, dim = items.shape
    if n == 0:
        raise ConfigError("an index needs at least one item")
    sq = (items.astype(np.float64) ** 2).sum(1)
    max_norm = float(np.sqrt(sq.max()))
    lifted = np.hstack([items, np.sqrt(np.maximum(max_norm ** 2 - sq, 0.0)).astype(np.float32)[:, None]])
    build = _build_usearch if config.kind == "usearch" else _build_faiss
    return ItemIndex(build(lifted, config), n, dim, max_norm, config)


def load_index(path: Path, sha256: str, max_norm: float, config: AnnConfig) -> ItemIndex:
    """The index saved at ``path``, refused (``LoadError``) unless its bytes hash to ``sha256``. The
    index is made from the very bytes that were hashed, never from the path again."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LoadError(f"cannot read the index {path}: {exc}") from None
    found = hashlib.sha256(data).hexdigest()
    if found != sha256:
        raise LoadError(f"the index {path} is not the one recorded (sha256 {found[:12]}…, expected {sha256[:12]}…)")
    load = _usearch_from_bytes if config.kind == "usearch" else _faiss_from_bytes
    try:
        backend, n, lifted_dim = load(data, config)
    except (RuntimeError, ValueError) as exc:
        raise LoadError(f"{path} is not a {config.kind} index: {str(exc).splitlines()[0]}") from None
    return ItemIndex(backend, n, lifted_dim - 1, max_norm, config)


# ---------------------------------------------------------------- exact retrieval and its helpers

def exact_top_k(queries: np.ndarray, items: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact ``(B, k)`` best scores and ids by inner product: one matrix product, a partial sort."""
    scores = np.asarray(queries, dtype=np.float32) @ np.asarray(items, dtype=np.float32).T
    k = min(k, scores.shape[1])
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    ids = np.take_along_axis(top, order, axis=1)
    return np.take_along_axis(scores, ids, axis=1), ids.astype(np.int64)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    """The share of the exact top-k (``truth``, ``(B, k)``) that the index found, over all queries."""
    hits = sum(len(set(f[f >= 0].tolist()) & set(t.tolist())) for f, t in zip(found, truth, strict=True))
    return hits / truth.size if truth.size else 1.0


def _float32_rows(x: np.ndarray, dim: int | None, what: str) -> np.ndarray:
    x = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float32)
    if x.ndim != 2 or (dim is not None and x.shape[1] != dim):
        raise ConfigError(f"{what} must be (rows, {dim or 'd'}) vectors, got shape {x.shape}")
    return x


# ---------------------------------------------------------------- faiss

@contextlib.contextmanager
def faiss_threads(n: int) -> Iterator[None]:
    """faiss's OpenMP threads are the process's: set for a call, then put back (0: every core)."""
    import faiss

    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(n if n > 0 else _cores())
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def _cores() -> int:
    return len(os.sched_getaffinity(0))


@dataclass
class _Faiss:
    index: Any
    config: AnnConfig

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Squared Euclidean distances and ids, nearest first."""
        with faiss_threads(self.config.search_threads):
            distances, ids = self.index.search(queries, k)
        return distances.astype(np.float32, copy=False), ids.astype(np.int64, copy=False)

    def nbytes(self) -> int:
        import faiss

        return int(faiss.serialize_index(self.index).nbytes)

    def to_bytes(self) -> bytes:
        import faiss

        return bytes(faiss.serialize_index(self.index))


def _tune(index: Any, config: AnnConfig) -> Any:
    import faiss

    if config.kind == "ivf":
        faiss.extract_index_ivf(index).nprobe = config.nprobe
    else:
        index.hnsw.efSearch = config.ef_search
    return index


def _build_faiss(items: np.ndarray, config: AnnConfig) -> _Faiss:
    import faiss

    n, dim = items.shape
    with faiss_threads(config.build_threads):
        if config.kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, config.m)
            index.hnsw.efConstruction = config.ef_construction
        else:
            nlist = config.lists_for(n)
            index = faiss.IndexIVFFlat(faiss.IndexFlatL2(dim), dim, nlist)
            rng = np.random.default_rng(config.seed)
            sample = items if n <= config.train_size else items[rng.choice(n, config.train_size, replace=False)]
            index.cp.seed = config.seed
            index.train(sample)
        index.add(items)
    return _Faiss(_tune(index, config), config)


def _faiss_from_bytes(data: bytes, config: AnnConfig) -> tuple[_Faiss, int, int]:
    import faiss

    index = faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    return _Faiss(_tune(index, config), config), int(index.ntotal), int(index.d)


# ---------------------------------------------------------------- usearch

@dataclass
class _Usearch:
    index: Any
    config: AnnConfig

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Squared Euclidean distances and ids, nearest first; -1 (and inf) past what was found."""
        found = self.index.search(queries, k, threads=self.config.search_threads)
        keys = np.array(found.keys, dtype=np.int64, ndmin=2)
        distances = np.array(found.distances, dtype=np.float32, ndmin=2)
        counts = np.array(getattr(found, "counts", [len(np.atleast_1d(found.keys))]), ndmin=1)
        missing = np.arange(keys.shape[1])[None, :] >= counts[:, None]
        keys[missing], distances[missing] = -1, np.inf
        return distances, keys

    def nbytes(self) -> int:
        return int(self.index.memory_usage)

    def to_bytes(self) -> bytes:
        return bytes(self.index.save())


def _usearch() -> Any:
    try:
        from usearch import index
    except ImportError:
        raise ConfigError("the usearch index needs usearch (pip install usearch; it is in the dev extra)") from None
    return index


def _usearch_index(dim: int, config: AnnConfig) -> Any:
    Index = _usearch().Index

    return Index(ndim=dim, metric="l2sq", dtype="f32", connectivity=config.m, expansion_add=config.ef_construction,
                 expansion_search=config.ef_search)


def _build_usearch(items: np.ndarray, config: AnnConfig) -> _Usearch:
    index = _usearch_index(items.shape[1], config)
    index.add(np.arange(len(items), dtype=np.int64), items, threads=config.build_threads)
    return _Usearch(index, config)


def _usearch_from_bytes(data: bytes, config: AnnConfig) -> tuple[_Usearch, int, int]:
    restored = _usearch().Index.restore(bytearray(data))
    if restored is None:
        raise ValueError("no usearch index in these bytes")
    restored.expansion_search = config.ef_search
    return _Usearch(restored, config), len(restored), int(restored.ndim)
