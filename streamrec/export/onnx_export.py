"""Ship a trained model as ONNX + JSON (``streamrec.export.onnx_load`` loads it back).

``publish`` adds a version to the model registry (its layout, pointers and history are
``streamrec.registry``'s) and points ``CURRENT`` at it. What a version holds:

    model.onnx      the model's ``score`` graph (see below)
    manifest.json   kind, config, dataset, protocol, metrics, inputs and output, sha256 of model.onnx, versions
    vocab.json      item_id per item index (index 0 is padding); optional for a ranker

Two kinds of model share the registry, told apart by the manifest's ``kind`` and the ``GraphSpec``
given to ``publish``:

- ``"sequence"`` (the default, ``sequence_graph``): ``seq`` (B, T) int64 -> ``scores`` (B, n_items + 1);
  ``load_onnx`` returns a ``Recommender``. Or, with the session contract (``session_graph``), ``seq`` ->
  ``session`` (B, d), the model's ``session``: the version then also holds the item table, the
  model's ``item_vectors`` (``items`` in the manifest: ``session @ items.T`` are the scores), and an
  index over it (``index.ann``, its sha256 and settings under ``index``: ``streamrec.retrieval.ann``),
  and the manifest says ``"contract": "session"``.
- ``"ranker"`` (``ranker_graph``): ``sparse`` (N, F) int64, ``multi`` (N, G) and ``dense`` (N, D)
  float32 -> ``logits`` (N,); ``load_ranker`` returns an ``OnnxRanker``.

"""

from __future__ import annotations

import dataclasses
import shutil
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
from torch import nn

from streamrec import registry as reg
from streamrec.errors import ArtifactError
from streamrec.export.arrays import write_arrays
from streamrec.export.onnx_load import INDEX_FILE, INPUT, OUTPUT, RANKER_INPUTS, RANKER_OUTPUT, SESSION_OUTPUT, Kind
from streamrec.retrieval.ann import AnnConfig, build_index

__all__ = ["GraphInput", "GraphSpec", "export_onnx", "publish", "ranker_graph", "sequence_graph", "session_graph"]

OPSET = 17


@dataclass(frozen=True)
class GraphInput:
    """One input of the exported graph. ``example`` is traced once: make every dynamic axis > 1 there,
    or the tracer may treat it as a constant; its values must be valid inputs (e.g. in-range indices)."""

    name: str
    example: torch.Tensor
    dynamic: Mapping[int, str]  # axis -> symbolic name
    notes: Mapping[str, object] = field(default_factory=dict)  # extra keys for the manifest's description


@dataclass(frozen=True)
class GraphSpec:
    """What ``publish`` exports, ``model.score(*inputs) -> output``, and which loader reads it back."""

    kind: Kind
    inputs: tuple[GraphInput, ...]
    output: str
    output_dynamic: Mapping[int, str]
    method: str = "score"  # the model's method that is exported: "session" for the session contract


def sequence_graph(max_len: int) -> GraphSpec:
    """``seq`` (B, T) left-padded item indices, ``T <= max_len`` -> ``scores`` (B, n_items + 1)."""
    seq = GraphInput(INPUT, torch.ones((2, max_len), dtype=torch.int64), {0: "batch", 1: "seq_len"},
                     {"padding": "left, 0", "max_len": max_len})
    return GraphSpec("sequence", (seq,), OUTPUT, {0: "batch"})


def session_graph(max_len: int) -> GraphSpec:
    """The session contract: ``seq`` as ``sequence_graph`` -> ``session`` (B, d), the model's ``session``."""
    return dataclasses.replace(sequence_graph(max_len), output=SESSION_OUTPUT, method="session")


def ranker_graph(config: Any) -> GraphSpec:
    """``sparse`` (N, F) int64, ``multi`` (N, G) 0/1 float32, raw ``dense`` (N, D) float32 -> ``logits`` (N,).

    ``config`` is a ranker's config: ``sparse_sizes`` (F of them), ``n_multi`` (G), ``n_dense`` (D).
    """
    n = 3  # any N > 1; zeros are valid in every field
    sparse, multi, dense = RANKER_INPUTS
    return GraphSpec("ranker", (
        GraphInput(sparse, torch.zeros((n, len(config.sparse_sizes)), dtype=torch.int64), {0: "N"},
                   {"fields": "one index per field, 0 <= index < config.sparse_sizes[field]"}),
        GraphInput(multi, torch.zeros((n, config.n_multi)), {0: "N"}, {"encoding": "0/1 multi-hot"}),
        GraphInput(dense, torch.zeros((n, config.n_dense)), {0: "N"},
                   {"normalised": "inside the graph with config.dense_mean and dense_std: feed raw values"}),
    ), RANKER_OUTPUT, {0: "N"})


class _Traced(nn.Module):
    """Makes ``method`` (``score``, or ``session``) the traced ``forward``."""

    def __init__(self, model: nn.Module, method: str) -> None:
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return getattr(self.model, self.method)(*inputs)  # type: ignore[no-any-return]


def export_onnx(model: nn.Module, path: Path, graph: GraphSpec | None = None, *, max_len: int | None = None) -> Path:
    """Write ``model.score`` as ONNX with ``graph``'s inputs, output and dynamic axes.

    ``export_onnx(model, path, max_len=T)`` is short for ``graph=sequence_graph(T)``.
    """
    if graph is None:
        if max_len is None:
            raise ValueError("export_onnx needs a GraphSpec, or max_len for a sequence model")
        graph = sequence_graph(max_len)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    was_training = model.training
    if not callable(getattr(model, graph.method, None)):
        raise ArtifactError(f"{type(model).__name__} has no {graph.method}(): it cannot be exported with that contract")
    traced = _Traced(model, graph.method).cpu().eval()
    dynamic_axes = {i.name: dict(i.dynamic) for i in graph.inputs} | {graph.output: dict(graph.output_dynamic)}
    # onnxscript (which the new torch.export-based exporter needs) is not a dependency; the
    # TorchScript exporter still works but warns that it is deprecated.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(traced, tuple(i.example for i in graph.inputs), str(path),
                          input_names=[i.name for i in graph.inputs], output_names=[graph.output],
                          dynamic_axes=dynamic_axes, opset_version=OPSET, dynamo=False)
    model.train(was_training)
    onnx.checker.check_model(str(path))
    return path


def _describe(path: Path, graph: GraphSpec) -> tuple[list[dict[str, object]], dict[str, object]]:
    """The manifest's inputs and output, read from the exported file itself: names, dtypes, and
    shapes with the symbolic name of each dynamic axis and the size of each fixed one."""

    def tensor(value: onnx.ValueInfoProto) -> dict[str, object]:
        t = value.type.tensor_type
        return {"name": value.name, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name,
                "shape": [d.dim_param or d.dim_value for d in t.shape.dim]}

    model = onnx.load(str(path), load_external_data=False)
    notes = {i.name: i.notes for i in graph.inputs}
    inputs = [tensor(v) | dict(notes.get(v.name, {})) for v in model.graph.input]
    return inputs, tensor(model.graph.output[0])


def publish(model: nn.Module, config: Any, *, name: str, vocab: Sequence[str] | None = None, dataset: str,
            protocol: Mapping[str, object], metrics: Mapping[str, object], registry: Path,
            extra: Mapping[str, object] | None = None, graph: GraphSpec | None = None,
            arrays: Mapping[str, Mapping[str, np.ndarray]] | None = None, index: AnnConfig | None = None) -> Path:
    """Export ``model`` as a new version of ``name`` in ``registry``, then point ``CURRENT`` at it (a
    ``HISTORY`` line records the move); returns the version dir.

    ``config`` is the model's dataclass config, stored in the manifest. ``graph`` says what to export
    (default: ``sequence_graph(config.max_len)``; a ranker passes ``ranker_graph(config)``).
    ``vocab[i]`` is the item_id of index ``i``: a sequence model needs it (``n_items + 1`` entries),
    for a ranker it is optional. ``arrays`` are groups of arrays stored with the version
    (``streamrec.export.arrays``), each listed in the manifest under its group's key: a ranker's
    item table. With ``session_graph``, the model's item table and an ``index`` over it are stored too.
    """
    if graph is None:
        graph = sequence_graph(config.max_len)
    table = None
    if graph.method == "session":
        with torch.no_grad():
            table = model.item_vectors().detach().cpu().numpy().astype(np.float32)  # type: ignore[operator]
        arrays = {**(arrays or {}), "items": {"items": table}}
    if graph.kind == "sequence" and (vocab is None or len(vocab) != config.n_items + 1):
        raise ArtifactError(f"vocab has {'no' if vocab is None else len(vocab)} entries, "
                            f"the model {config.n_items} items + padding")
    version, staging = reg.stage_version(registry, name)
    try:
        groups: dict[str, object] = {key: write_arrays(staging, group, prefix=f"{key}.")
                                     for key, group in (arrays or {}).items()}
        if table is not None:
            groups |= {"contract": "session", "index": _write_index(staging, table, index or AnnConfig())}
        _fill(staging, model, config, name, version, vocab, dataset, protocol, metrics, {**(extra or {}), **groups},
              graph)
        final = reg.add_version(staging, registry, name, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    reg.move_pointer(registry, name, final.name, "published")
    return final


def _write_index(staging: Path, items: np.ndarray, config: AnnConfig) -> dict[str, object]:
    """An index over the real items (``items[1:]``: row 0 is padding) in ``staging``; its manifest entry."""
    built = build_index(items[1:], config)
    sha256 = built.save(staging / INDEX_FILE)
    return {"file": INDEX_FILE, "sha256": sha256, "max_norm": built.max_norm, "n": built.n,
            "config": dataclasses.asdict(config)}


def _fill(staging: Path, model: nn.Module, config: Any, name: str, version: str, vocab: Sequence[str] | None,
          dataset: str, protocol: Mapping[str, object], metrics: Mapping[str, object],
          extra: Mapping[str, object] | None, graph: GraphSpec) -> None:
    """Export into ``staging``, the hidden directory that becomes ``version``; add the vocab and manifest."""
    onnx_path = export_onnx(model, staging / reg.MODEL, graph)
    if vocab is not None:
        reg.write_vocab(staging, vocab)
    inputs, output = _describe(onnx_path, graph)
    manifest = {
        "name": name,
        "version": version,
        "kind": graph.kind,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_class": type(model).__name__,
        "config": dataclasses.asdict(config),
        "dataset": dataset,
        "protocol": dict(protocol),
        "metrics": dict(metrics),
        "inputs": inputs,
        **({"input": inputs[0]} if len(inputs) == 1 else {}),  # the form readers of sequence models know
        "output": output,
        "opset": OPSET,
        "sha256": reg.sha256_of(onnx_path),
        "vocab": reg.VOCAB if vocab is not None else None,
        "torch_version": torch.__version__,
        "onnx_version": onnx.__version__,
        **dict(extra or {}),
    }
    reg.write_manifest(staging, manifest)
