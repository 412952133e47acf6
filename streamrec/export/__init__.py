"""Shipping models: ONNX export into a versioned registry with a manifest, and loading back."""

from __future__ import annotations

from streamrec.export.onnx_export import (
    DEFAULT_REGISTRY,
    ArtifactError,
    GraphInput,
    GraphSpec,
    OnnxRanker,
    OnnxRecommender,
    current_version,
    export_onnx,
    load_onnx,
    load_ranker,
    publish,
    ranker_graph,
    resolve,
    sequence_graph,
    sha256_of,
)

__all__ = [
    "DEFAULT_REGISTRY",
    "ArtifactError",
    "GraphInput",
    "GraphSpec",
    "OnnxRanker",
    "OnnxRecommender",
    "current_version",
    "export_onnx",
    "load_onnx",
    "load_ranker",
    "publish",
    "ranker_graph",
    "resolve",
    "sequence_graph",
    "sha256_of",
]
