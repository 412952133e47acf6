"""Warm starts: begin a retrain from a published version's weights instead of from scratch.

Sequence-model versions keep their torch weights beside the ONNX graph as ``weights.npz`` (plain
arrays, read with ``allow_pickle=False``; servers never read it). The new catalogue numbers items
differently, so every table indexed by item (embeddings, output layers, biases) is re-indexed by
item id: known items keep their learned rows, new items keep the fresh initialisation, and rows
past the catalogue (padding aside, e.g. BERT4Rec's mask token) stay in their place at the end.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from streamrec.errors import ConfigError

__all__ = ["WEIGHTS", "load_weights", "remap_state", "save_weights", "warm_start"]

logger = logging.getLogger(__name__)
WEIGHTS = "weights.npz"
_MAX_EXTRA_ROWS = 2  # rows an item table has past the catalogue (BERT4Rec's mask token)


def save_weights(model: torch.nn.Module, version_dir: Path) -> Path:
    path = Path(version_dir) / WEIGHTS
    np.savez(path, **{k: v.detach().cpu().numpy() for k, v in model.state_dict().items()})
    return path


def load_weights(version_dir: Path) -> tuple[dict[str, np.ndarray], list[str]]:
    """The weights and the vocabulary of a published version."""
    version_dir = Path(version_dir)
    try:
        with np.load(version_dir / WEIGHTS, allow_pickle=False) as npz:
            state = {k: npz[k] for k in npz.files}
        vocab = json.loads((version_dir / "vocab.json").read_bytes())
    except FileNotFoundError as exc:
        raise ConfigError(f"{version_dir} cannot seed a warm start: {exc.filename} is missing (versions published "
                          "before warm starts existed have no weights.npz; retrain from scratch once)") from None
    return state, vocab


def remap_state(old: Mapping[str, np.ndarray], old_vocab: Sequence[str], new_vocab: Sequence[str],
                new: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``new`` (a fresh model's state) overwritten by ``old`` wherever it fits; returns the state and the
    names left fresh (absent, or shaped differently other than by the catalogue)."""
    old_rows, new_rows = len(old_vocab), len(new_vocab)
    index = {item: i for i, item in enumerate(old_vocab)}
    source = np.array([index.get(item, -1) for item in new_vocab], dtype=np.int64)
    source[0] = 0  # padding
    hit = source >= 0
    out, fresh = {}, []
    for name, tensor in new.items():
        value = old.get(name)
        target = tensor.detach().clone()
        extra = value.shape[0] - old_rows if value is not None and value.ndim else -1
        if value is not None and 0 <= extra <= _MAX_EXTRA_ROWS and tuple(target.shape) == (new_rows + extra, *value.shape[1:]):
            rows = torch.as_tensor(value, dtype=target.dtype)
            target[torch.as_tensor(np.flatnonzero(hit))] = rows[torch.as_tensor(source[hit])]
            target[new_rows:] = rows[old_rows:]
        elif value is not None and tuple(value.shape) == tuple(target.shape):
            target = torch.as_tensor(value, dtype=target.dtype)
        else:
            fresh.append(name)
        out[name] = target
    return out, fresh


def warm_start(model: torch.nn.Module, version_dir: Path, new_vocab: Sequence[str]) -> list[str]:
    """Load ``version_dir``'s weights into ``model`` (built for ``new_vocab``); returns the fresh names."""
    old, old_vocab = load_weights(version_dir)
    state, fresh = remap_state(old, old_vocab, new_vocab, model.state_dict())
    model.load_state_dict(state)
    kept = sum(1 for item in new_vocab[1:] if item in set(old_vocab))
    logger.info("warm start from %s: %s of %s items known, fresh: %s", version_dir, kept, len(new_vocab) - 1,
                ", ".join(fresh) or "nothing")
    return fresh
