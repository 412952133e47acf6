"""A release from the registry, loaded: the ranker version and every member its manifest names.

A release is artifacts only. The ranker's manifest names the version of every generator it was
trained with, the item table travels in the ranker's own version, and each member carries the
split it was fitted on and its vocabulary's digest. So loading reads no dataset and fits nothing:
it maps arrays and opens ONNX graphs, and a rollback (one pointer) brings back every part.

Everything is checked before a ``Release`` is returned, and any failure is a ``LoadError`` saying
why: the names that become paths (``streamrec.registry``), each file's sha256 (by the loaders,
which use the very bytes they hashed), that every member was fitted on the ranker's split and
vocabulary, and that the item table fits the ranker.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamrec import registry as reg
from streamrec.data.names import check_dataset
from streamrec.errors import LoadError
from streamrec.export.arrays import read_arrays
from streamrec.export.generators import load_generator, vocab_digest
from streamrec.export.onnx_load import OnnxRanker, load_onnx, load_ranker
from streamrec.models.base import Recommender
from streamrec.rank.features import ItemTable
from streamrec.rank.pipeline import Pipeline

__all__ = ["ITEM_TABLE", "Members", "Release", "load_release"]

logger = logging.getLogger(__name__)

ITEM_TABLE = "item_table"  # the ranker manifest's key for its item table's arrays

Members = MutableMapping[tuple[str, str], Recommender]  # (name, version) -> loaded member


@dataclass(frozen=True, eq=False)
class Release:
    pipeline: Pipeline
    vocab: tuple[str, ...]  # item_id per item index; index 0 is padding
    versions: dict[str, str]  # model name -> version, the ranker's included
    dataset: str
    ranker: OnnxRanker


def load_release(registry: Path, version: str, *, fold: bool = True, members: Members | None = None,
                 retrieve_above: int | None = None) -> Release:
    """The release whose ranker is ``version``. ``members`` caches loaded members across calls (a new
    ranker over the same generators then loads in milliseconds); ``fold`` serves DeepFM through
    ``streamrec.rank.folded`` (the same logits, less work). Only DeepFM folds: a ranker whose manifest names
    another ``architecture`` (absent: DeepFM, as every release before the others) is served by its ONNX graph.
    ``retrieve_above``: the pipeline's (``Pipeline``): sources of the session contract retrieve from their
    index when the catalogue has more items."""
    members = {} if members is None else members
    ranker_dir = reg.version_dir(registry, reg.RANKER, version)
    ranker = load_ranker(ranker_dir)
    manifest = ranker.manifest
    spec = manifest.get("pipeline") or {}
    if not spec.get("sources") or not spec.get("n_per_source") or ITEM_TABLE not in manifest or ranker.vocab is None:
        raise LoadError(f"{reg.RANKER} version {version} does not name a whole release (sources, item table, "
                        "vocabulary); it predates releases made of artifacts: publish it again with "
                        "`streamrec train-ranker`")
    vocab = tuple(ranker.vocab)
    digest = vocab_digest(vocab)
    protocol = _normal(manifest.get("protocol"))
    recorded = spec.get("generator_versions") or {}
    generators: dict[str, Recommender] = {}
    versions = {reg.RANKER: version}
    for name in spec["sources"]:
        wanted = recorded.get(name)
        if not wanted:
            raise LoadError(f"{reg.RANKER} version {version} names no version of its source {name}; publish it again")
        member = _member(registry, str(name), str(wanted), members)
        member_manifest: Mapping[str, Any] = member.manifest  # type: ignore[attr-defined]
        if _normal(member_manifest.get("protocol")) != protocol:
            raise LoadError(f"{name} version {wanted} was fitted on another split than {reg.RANKER} {version}")
        member_digest = member_manifest.get("vocab_sha256") or vocab_digest(getattr(member, "vocab", ()))
        if member_digest != digest or member.n_items != len(vocab) - 1:  # type: ignore[attr-defined]
            raise LoadError(f"{name} version {wanted} has another item vocabulary than {reg.RANKER} {version}; "
                            "retrain the release")
        generators[name] = member
        versions[name] = str(wanted)
    table = ItemTable.from_state(read_arrays(ranker_dir, manifest[ITEM_TABLE]), spec.get("genres", ()))
    sizes = manifest.get("config", {}).get("sparse_sizes") or [0]
    if int(sizes[0]) != table.n_items + 1 or table.n_items != len(vocab) - 1:
        raise LoadError(f"{reg.RANKER} version {version} embeds {int(sizes[0]) - 1} items, its item table has "
                        f"{table.n_items} and its vocabulary {len(vocab) - 1}: publish it again")
    score = ranker.score
    architecture = manifest.get("architecture", "deepfm")
    if fold and architecture == "deepfm":
        from streamrec.rank.folded import fold_ranker

        score = fold_ranker(ranker, ranker.graph, table)  # the bytes the sha256 was checked on
    elif fold:
        logger.info("ranker served by its ONNX graph event=ranker_onnx architecture=%s version=%s", architecture,
                    version)
    pipeline = Pipeline(generators, table, spec["n_per_source"], score, retrieve_above=retrieve_above)
    return Release(pipeline, vocab, versions, check_dataset(manifest.get("dataset")), ranker)


def _member(registry: Path, name: str, version: str, members: Members) -> Recommender:
    if (name, version) not in members:
        path = reg.version_dir(registry, name, version)
        members[name, version] = load_onnx(path) if name in reg.SEQUENCE_MODELS else load_generator(path)
    return members[name, version]


def _normal(value: object) -> object:
    return json.loads(json.dumps(value, sort_keys=True))
