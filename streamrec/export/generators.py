"""Fitted candidate generators (item-kNN, session-kNN, MF, content, popularity) as registry versions.

A generator's fitted state is a few arrays (each model class's ``state()``): a version holds them as
``.npy`` files (``streamrec.export.arrays``) and a manifest with its config, the split it was fitted
on and its vocabulary's digest. Loading maps the arrays and rebuilds the model with
``from_state``: nothing is fitted and no dataset is read, so a server starts in the time it takes
to map files, and a release names every member by version (the ranker's manifest), so a rollback
restores the neighbour tables along with the networks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import shutil
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from streamrec import registry as reg
from streamrec.errors import ArtifactError
from streamrec.export.arrays import read_arrays, write_arrays
from streamrec.models.base import Recommender

__all__ = ["GENERATORS", "KIND", "load_generator", "publish_generator", "vocab_digest"]

KIND: Final = "generator"

#: name -> (module, model class, config class): what ``load_generator`` may build, and nothing else
GENERATORS: Final[Mapping[str, tuple[str, str, str]]] = {
    "itemknn": ("streamrec.models.itemknn", "ItemKNN", "ItemKNNConfig"),
    "sknn": ("streamrec.models.sknn", "SKNN", "SKNNConfig"),
    "vsknn": ("streamrec.models.sknn", "VSKNN", "VSKNNConfig"),
    "mf": ("streamrec.models.mf", "MatrixFactorization", "ALSConfig"),
    "content": ("streamrec.models.content", "ContentSimilarity", "ContentConfig"),
    "pop": ("streamrec.models.popularity", "MostPopular", "PopularityConfig"),
}


def vocab_digest(vocab: Sequence[str]) -> str:
    """The sha256 of a vocabulary (item_id per index): members of one release must share it."""
    return hashlib.sha256(json.dumps(list(vocab)).encode()).hexdigest()


def publish_generator(model: Any, *, vocab: Sequence[str], dataset: str, protocol: Mapping[str, object],
                      registry: Path, point: bool = True) -> Path:
    """A fitted generator as a new version of ``model.name`` in ``registry``; ``point`` moves its
    ``CURRENT`` too. Returns the version directory."""
    name = model.name
    if name not in GENERATORS:
        raise ArtifactError(f"{name!r} is not a generator that publishes as arrays (one of {', '.join(GENERATORS)})")
    if len(vocab) != model.n_items + 1:
        raise ArtifactError(f"vocab has {len(vocab)} entries, the {name} model {model.n_items} items + padding")
    version, staging = reg.stage_version(registry, name)
    try:
        manifest = {
            "name": name, "version": version, "kind": KIND,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "model_class": type(model).__name__, "config": dataclasses.asdict(model.config),
            "dataset": dataset, "protocol": dict(protocol), "n_items": model.n_items,
            "vocab_sha256": vocab_digest(vocab), "arrays": write_arrays(staging, model.state()),
        }
        reg.write_manifest(staging, manifest)
        final = reg.add_version(staging, registry, name, version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if point:
        reg.move_pointer(registry, name, final.name, "published")
    return final


def load_generator(path: Path) -> Recommender:
    """A published generator, its arrays checked against their sha256 and mapped read-only; the
    model carries its ``manifest``. ``path``: a version directory, or a model directory (its CURRENT)."""
    version_dir = reg.resolve(path)
    manifest = reg.read_manifest(version_dir)
    name = manifest.get("name")
    if manifest.get("kind") != KIND or name not in GENERATORS:
        raise ArtifactError(f"{version_dir} holds a {manifest.get('kind', 'sequence')} model called {name!r}, not "
                            f"one of the generators {', '.join(GENERATORS)}")
    module, cls_name, config_name = GENERATORS[name]
    code = importlib.import_module(module)
    try:
        config = getattr(code, config_name)(**manifest["config"])
    except (TypeError, ValueError, KeyError) as exc:
        raise ArtifactError(f"{version_dir}'s config does not fit {config_name}: {exc}") from exc
    model = getattr(code, cls_name).from_state(config, read_arrays(version_dir, manifest.get("arrays") or {}))
    if model.n_items != manifest.get("n_items"):
        raise ArtifactError(f"{version_dir} says {manifest.get('n_items')} items, its arrays hold {model.n_items}")
    model.manifest = manifest
    return model
