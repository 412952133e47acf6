"""Loading published ONNX models for serving and evaluation: onnxruntime and numpy only.

Split from ``streamrec.export.onnx_export`` (which exports with torch) so that a server, which only
loads, never imports torch or the trainer. Both loaders read the graph once, check its sha256
against the manifest, and create the session from those same bytes (a file replaced after the check
is never run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from streamrec import registry as reg
from streamrec.errors import ArtifactError
from streamrec.models.sequence import SequenceRecommender

__all__ = ["INPUT", "OUTPUT", "RANKER_INPUTS", "RANKER_OUTPUT", "Kind", "OnnxRanker", "OnnxRecommender",
           "load_onnx", "load_ranker", "ort_session"]

INPUT, OUTPUT = "seq", "scores"
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

    def __init__(self, session: Any, manifest: dict[str, Any], vocab: list[str], *, batch_size: int = 256) -> None:
        def score(seq: np.ndarray) -> np.ndarray:
            return session.run([OUTPUT], {INPUT: seq.astype(np.int64, copy=False)})[0]

        config = manifest["config"]
        super().__init__(score, config["n_items"], config["max_len"], name=manifest["name"], batch_size=batch_size)
        self.session = session
        self.manifest = manifest
        self.vocab = vocab


def load_onnx(path: Path, *, intra_op_threads: int = 1, batch_size: int = 256) -> OnnxRecommender:
    """A sequence model's ``Recommender`` over onnxruntime, after checking the sha256.

    ``path``: a version directory, its ``model.onnx``, or a model directory (its ``CURRENT`` version).
    """
    session, manifest, vocab, _ = _open(path, "sequence", intra_op_threads)
    if vocab is None:
        raise ArtifactError(f"{manifest['name']} version {manifest['version']} has no vocab.json: publish it again")
    return OnnxRecommender(session, manifest, vocab, batch_size=batch_size)


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
