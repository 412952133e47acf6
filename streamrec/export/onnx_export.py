"""Ship a trained sequence model as ONNX + JSON, and load it back for serving or evaluation.

Layout of the registry (root defaults to ``<repo>/models``)::

    <root>/<name>/<version>/model.onnx      the model's ``score`` graph: seq (B, T) int64 -> scores (B, n_items + 1)
    <root>/<name>/<version>/manifest.json   config, dataset, protocol, metrics, sha256 of model.onnx, versions
    <root>/<name>/<version>/vocab.json      item_id per item index (index 0 is padding)
    <root>/<name>/CURRENT                   the served version's name, replaced atomically

``load_onnx`` checks the sha256 in the manifest before it creates a session.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from streamrec.errors import StreamrecError
from streamrec.train.adapter import TorchSequenceRecommender

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

DEFAULT_REGISTRY = Path(__file__).resolve().parents[2] / "models"
OPSET = 17
INPUT, OUTPUT = "seq", "scores"


class ArtifactError(StreamrecError):
    """A model artifact is missing, incomplete or does not match its manifest."""


class _ScoreGraph(nn.Module):
    """Makes ``score`` the traced ``forward``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        return self.model.score(seq)  # type: ignore[operator]


def export_onnx(model: nn.Module, path: Path, *, max_len: int) -> Path:
    """Write ``model.score`` as ONNX with dynamic batch and sequence axes (``T <= max_len``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    graph = _ScoreGraph(model).cpu().eval()
    example = torch.ones((2, max_len), dtype=torch.int64)
    # onnxscript (which the new torch.export-based exporter needs) is not a dependency; the
    # TorchScript exporter still works but warns that it is deprecated.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(graph, (example,), str(path), input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch", 1: "seq_len"}, OUTPUT: {0: "batch"}},
                          opset_version=OPSET, dynamo=False)
    model.train(was_training)
    onnx.checker.check_model(str(path))
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _new_version(model_dir: Path) -> str:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    version, n = stamp, 1
    while (model_dir / version).exists():
        n += 1
        version = f"{stamp}-{n}"
    return version


def publish(model: nn.Module, config: Any, *, name: str, vocab: Sequence[str], dataset: str,
            protocol: Mapping[str, object], metrics: Mapping[str, object],
            registry: Path | None = None, extra: Mapping[str, object] | None = None) -> Path:
    """Export ``model`` as a new version of ``name``, then point ``CURRENT`` at it; returns the version dir.

    ``config`` is the model's dataclass config (it needs ``n_items`` and ``max_len``); ``vocab[i]`` is
    the item_id of index ``i``.
    """
    if len(vocab) != config.n_items + 1:
        raise ArtifactError(f"vocab has {len(vocab)} entries, the model {config.n_items} items + padding")
    model_dir = Path(registry or DEFAULT_REGISTRY) / name
    model_dir.mkdir(parents=True, exist_ok=True)
    version = _new_version(model_dir)
    staging = Path(tempfile.mkdtemp(dir=model_dir, prefix=f".{version}."))
    onnx_path = export_onnx(model, staging / "model.onnx", max_len=config.max_len)
    (staging / "vocab.json").write_text(json.dumps(list(vocab)) + "\n")
    manifest = {
        "name": name,
        "version": version,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_class": type(model).__name__,
        "config": dataclasses.asdict(config),
        "dataset": dataset,
        "protocol": dict(protocol),
        "metrics": dict(metrics),
        "input": {"name": INPUT, "dtype": "int64", "shape": ["batch", "seq_len"], "padding": "left, 0",
                  "max_len": config.max_len},
        "output": {"name": OUTPUT, "dtype": "float32", "shape": ["batch", config.n_items + 1]},
        "opset": OPSET,
        "sha256": sha256_of(onnx_path),
        "vocab": "vocab.json",
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        **dict(extra or {}),
    }
    (staging / "manifest.json").write_text(json.dumps(manifest, indent=2, default=_jsonable) + "\n")
    final = model_dir / version
    os.replace(staging, final)
    _write_atomic(model_dir / "CURRENT", version + "\n")
    return final


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def current_version(model_dir: Path) -> str:
    pointer = Path(model_dir) / "CURRENT"
    if not pointer.is_file():
        raise ArtifactError(f"{model_dir} has no CURRENT pointer; publish a model there first")
    return pointer.read_text().strip()


def resolve(path: Path) -> Path:
    """A version directory from: a version dir, its ``model.onnx``, or a model dir (via ``CURRENT``)."""
    path = Path(path)
    if path.is_file() and path.name == "model.onnx":
        path = path.parent
    if not (path / "manifest.json").is_file() and (path / "CURRENT").is_file():
        path = path / current_version(path)
    if not (path / "manifest.json").is_file() or not (path / "model.onnx").is_file():
        raise ArtifactError(f"{path} is not a model version (no manifest.json and model.onnx there)")
    return path


class OnnxRecommender(TorchSequenceRecommender):
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
    """A ``Recommender`` over an onnxruntime session (CPUExecutionProvider), after checking the sha256.

    ``path``: a version directory, its ``model.onnx``, or a model directory (its ``CURRENT`` version).
    """
    import onnxruntime as ort

    version_dir = resolve(path)
    manifest = json.loads((version_dir / "manifest.json").read_text())
    actual = sha256_of(version_dir / "model.onnx")
    if actual != manifest.get("sha256"):
        raise ArtifactError(f"{version_dir / 'model.onnx'} has sha256 {actual}, but its manifest says "
                            f"{manifest.get('sha256')}; the file is corrupt or was replaced: publish the model again")
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(version_dir / "model.onnx"), options, providers=["CPUExecutionProvider"])
    vocab = json.loads((version_dir / manifest.get("vocab", "vocab.json")).read_text())
    return OnnxRecommender(session, manifest, vocab, batch_size=batch_size)
