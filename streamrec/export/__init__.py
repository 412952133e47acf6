"""Shipping models to the registry and loading them back.

- ``onnx_export``: sequence models and the ranker as ONNX (``publish``); imports torch, so it is
  loaded only when one of its names is first used from here.
- ``onnx_load``: ``load_onnx`` and ``load_ranker``, onnxruntime only.
- ``generators``: the fitted non-neural generators as arrays (``publish_generator``, ``load_generator``).
- ``arrays``: how arrays are stored, checked and mapped.

A server imports the loaders alone and never pulls in torch. The registry's layout, pointers and
manifests are ``streamrec.registry``'s; the loaders and publishers raise ``streamrec.errors.ArtifactError``.
"""

from __future__ import annotations

import importlib
from typing import Any

from streamrec.export.generators import load_generator, publish_generator
from streamrec.export.onnx_load import OnnxRanker, OnnxRecommender, load_onnx, load_ranker

__all__ = [
    "GraphInput",
    "GraphSpec",
    "OnnxRanker",
    "OnnxRecommender",
    "export_onnx",
    "load_generator",
    "load_onnx",
    "load_ranker",
    "publish",
    "publish_generator",
    "ranker_graph",
    "sequence_graph",
    "session_graph",
]

_EXPORTERS = ("GraphInput", "GraphSpec", "export_onnx", "publish", "ranker_graph", "sequence_graph", "session_graph")


def __getattr__(name: str) -> Any:
    """The torch-side names, imported on first use."""
    if name in _EXPORTERS:
        return getattr(importlib.import_module("streamrec.export.onnx_export"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
