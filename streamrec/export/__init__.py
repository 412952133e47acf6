"""Shipping models: ONNX export into a versioned registry with a manifest, and loading back."""

from __future__ import annotations

from streamrec.export.onnx_export import (
    DEFAULT_REGISTRY,
    ArtifactError,
    OnnxRecommender,
    current_version,
    export_onnx,
    load_onnx,
    publish,
    resolve,
    sha256_of,
)

__all__ = [
    "DEFAULT_REGISTRY",
    "ArtifactError",
    "OnnxRecommender",
    "current_version",
    "export_onnx",
    "load_onnx",
    "publish",
    "resolve",
    "sha256_of",
]
