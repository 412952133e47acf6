"""Loading published ONNX models for serving and evaluation: onnxruntime and numpy only.

Split from ``streamrec.export.onnx_export`` (which exports with torch) so that a server, which only
loads, never imports torch or the trainer. Both loaders read the graph once, check its sha256
against the manifest, and create the session from those same bytes (a file replaced after the check
is never run).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from streamrec import registry as reg
from streamrec.errors import ArtifactError, LoadError
from streamrec.export.arrays import read_arrays
from streamrec.models.sequence import SequenceRecommender
from streamrec.retrieval.ann import AnnConfig, ItemIndex, load_index
from streamrec.retrieval.source import Retrieved

__all__ = ["INDEX_FILE", "INPUT", "OUTPUT", "RANKER_INPUTS", "RANKER_OUTPUT", "SESSION_OUTPUT", "Kind",
           "OnnxRanker", "OnnxRecommender", "OnnxSessionRecommender", "load_onnx", "load_ranker", "ort_session"]

INPUT, OUTPUT = "seq", "scores"
SESSION_OUTPUT, INDEX_FILE = "session", "index.ann"  # the session contract's output, and its index's file
RANKER_INPUTS, RANKER_OUTPUT = ("sparse", "multi", "dense"), "logits"

Kind = Literal["sequence", "ranker"]


def _open(path: Path, kind: Kind, intra_op_threads: int) -> tuple[Any, dict[str, Any], list[str] | None, bytes]:
    """A checked version's onnxruntime session (CPUExecutionProvider), manifest, vocab (if it has one) and
    the graph's bytes. The session is made from the very bytes that were hashed, never from the path again."""
    version_dir = reg.resolve(path)
    manifest = reg.read_manifest(version_dir)
    found = manifest.get("kind", "sequence")  # manifests from before rankers have no kind
    if found != kind:
        loader = {"sequence": "load_onnx", "ranker": "load_ranker"}.get(found, "a loader for it")
        raise ArtifactError(f"{version_dir} holds a {found} model, not a {kind} model: open it with {loader}")
    graph = reg.read_model(version_dir, manifest)
    return ort_session(graph, intra_op_threads), manifest, reg.read_vocab(version_dir, manifest), graph


def ort_session(graph: bytes, intra_op_threads: int) -> Any:
    """An onnxruntime CPU session over ``graph``'s bytes, ``intra_op_threads`` threads within an op, one across."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


class OnnxRecommender(SequenceRecommender):
    """The shared sequence adapter over an onnxruntime session, with the version's manifest and vocab."""

    def __init__(self, session: Any, manifest: dict[str, Any], vocab: list[str], *, batch_size: int = 256,
                 score: Callable[[np.ndarray], np.ndarray] | None = None) -> None:
        """``score``: ``(B, T)`` padded input -> ``(B, n_items + 1)``; by default the graph's ``scores``."""
        def graph_scores(seq: np.ndarray) -> np.ndarray:
            return session.run([OUTPUT], {INPUT: seq.astype(np.int64, copy=False)})[0]

        config = manifest["config"]
        super().__init__(score or graph_scores, config["n_items"], config["max_len"], name=manifest["name"],
                         batch_size=batch_size)
        self.session = session
        self.manifest = manifest
        self.vocab = vocab


class OnnxSessionRecommender(OnnxRecommender):
    """A sequence model published with the session contract: the graph gives each history's vector,
    and ``score`` multiplies it with the item table (the full catalogue, exactly what the scores graph
    gives); ``retrieve`` asks the index for the top items instead (``streamrec.retrieval.source``)."""

    def __init__(self, session: Any, manifest: dict[str, Any], vocab: list[str], items: np.ndarray,
                 index: ItemIndex, *, batch_size: int = 256) -> None:
        super().__init__(session, manifest, vocab, batch_size=batch_size, score=lambda seq: self.embed(seq) @ items.T)
        self.items = items
        self.index = index

    def embed(self, seq: np.ndarray) -> np.ndarray:
        """``(B, T)`` padded input -> ``(B, d)`` float32 session vectors."""
        return self.session.run([SESSION_OUTPUT], {INPUT: seq.astype(np.int64, copy=False)})[0]

    def sessions(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        """``(B, d)`` float32: each history's vector, padded as ``score`` pads it."""
        chunks = [self.embed(self.pad(histories[lo:lo + self.batch_size]))
                  for lo in range(0, len(histories), self.batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, self.items.shape[1]), np.float32)

    def retrieve(self, histories: Sequence[np.ndarray]) -> Retrieved:
        return Retrieved(self.sessions(histories), self.items, self.index)


def load_onnx(path: Path, *, intra_op_threads: int = 1, batch_size: int = 256) -> OnnxRecommender:
    """A sequence model's ``Recommender`` over onnxruntime, after checking the sha256 (and, for the
    session contract, its item table's and its index's: ``OnnxSessionRecommender``).

    ``path``: a version directory, its ``model.onnx``, or a model directory (its ``CURRENT`` version).
    """
    session, manifest, vocab, _ = _open(path, "sequence", intra_op_threads)
    if vocab is None:
        raise ArtifactError(f"{manifest['name']} version {manifest['version']} has no vocab.json: publish it again")
    contract = manifest.get("contract", "scores")
    if contract == "scores":
        return OnnxRecommender(session, manifest, vocab, batch_size=batch_size)
    if contract != "session":
        raise ArtifactError(f"{manifest['name']} version {manifest['version']} has the contract {contract!r}, "
                            "which this server does not know (scores, session)")
    version_dir = reg.resolve(path)
    items = read_arrays(version_dir, manifest.get("items") or {}).get("items")
    entry = manifest.get("index") or {}
    if items is None or items.shape[0] != manifest["config"]["n_items"] + 1 or not entry:
        raise ArtifactError(f"{version_dir}: a session-contract version needs its item table (n_items + 1 rows) "
                            "and its index in the manifest; publish it again")
    try:
        index = load_index(version_dir / reg.check_name(entry["file"], "index file"), entry["sha256"],
                           float(entry["max_norm"]), AnnConfig(**entry["config"]))
    except LoadError as exc:
        raise ArtifactError(str(exc)) from None
    if index.n != items.shape[0] - 1 or index.dim != items.shape[1]:
        raise ArtifactError(f"{version_dir}: the index holds {index.n} vectors of {index.dim}, the item table "
                            f"{items.shape[0] - 1} of {items.shape[1]}")
    return OnnxSessionRecommender(session, manifest, vocab, items, index, batch_size=batch_size)


class OnnxRanker:
    """A published ranker over an onnxruntime session: raw features in, ``(N,)`` logits out."""

    def __init__(self, session: Any, manifest: dict[str, Any], vocab: list[str] | None, graph: bytes = b"") -> None:
        self.session = session
        self.manifest = manifest
        self.vocab = vocab
        self.graph = graph  # the checked bytes the session runs (streamrec.rank.folded reads its weights)

    def score(self, sparse: np.ndarray, multi: np.ndarray, dense: np.ndarray) -> np.ndarray:
        """``sparse`` (N, F) int64, ``multi`` (N, G) 0/1, raw ``dense`` (N, D) -> (N,) float32 logits."""
        arrays = (sparse.astype(np.int64, copy=False), multi.astype(np.float32, copy=False),
                  dense.astype(np.float32, copy=False))
        return self.session.run([RANKER_OUTPUT], dict(zip(RANKER_INPUTS, arrays, strict=True)))[0]


def load_ranker(path: Path, *, intra_op_threads: int = 1) -> OnnxRanker:
    """A published ranker (``publish(..., graph=ranker_graph(config))``), after checking the sha256.

    ``path``: a version directory, its ``model.onnx``, or a model directory (its ``CURRENT`` version).
    """
    return OnnxRanker(*_open(path, "ranker", intra_op_threads))
