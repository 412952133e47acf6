"""Shipping models: ONNX export into a versioned registry with a manifest, and loading back.

The registry's layout, pointers and manifests are ``streamrec.registry``'s; the loaders and
``publish`` raise ``streamrec.errors.ArtifactError``.
"""

from __future__ import annotations

from streamrec.export.onnx_export import (
    GraphInput,
    GraphSpec,
    OnnxRanker,
    OnnxRecommender,
    export_onnx,
    load_onnx,
    load_ranker,
    publish,
    ranker_graph,
    sequence_graph,
)

__all__ = [
    "GraphInput",
    "GraphSpec",
    "OnnxRanker",
    "OnnxRecommender",
    "export_onnx",
    "load_onnx",
    "load_ranker",
    "publish",
    "ranker_graph",
    "sequence_graph",
]
