"""``RegistryLoader`` on a small registry: an untrained DeepFM over ml-100k with one cheap source (``pop``),
published once; each test changes a copy of it and checks that the loader refuses what it must."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from streamrec import registry as reg
from streamrec.data.movielens import load
from streamrec.errors import LoadError
from streamrec.eval.protocols import LeaveOneOut, split
from streamrec.export import export_onnx, load_ranker, publish, ranker_graph
from streamrec.models.deepfm import DeepFM, DeepFMConfig
from streamrec.models.sasrec import SASRec, SASRecConfig
from streamrec.rank.features import ItemTable, dense_names, sparse_sizes
from streamrec.serve.loader import RegistryLoader
from streamrec.settings import Settings

SOURCES = ("pop",)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory, base_settings: Settings) -> tuple[Path, str]:
    """A registry with one complete, untrained ranker version; returns it and the version."""
    data = load("ml-100k", base_settings.data_dir)
    parts = split(data, LeaveOneOut())
    table = ItemTable.build(parts.train)
    names = dense_names(SOURCES)
    config = DeepFMConfig(sparse_sizes=sparse_sizes(table, len(SOURCES)), n_multi=len(table.genre_names),
                          n_dense=len(names), d_embed=4, hidden=(8,))
    torch.manual_seed(0)
    spec = {"sources": list(SOURCES), "n_per_source": {s: 50 for s in SOURCES}, "dense_features": list(names),
            "genres": list(table.genre_names), "generator_versions": {}}
    root = tmp_path_factory.mktemp("loader-registry")
    version_dir = publish(DeepFM(config), config, graph=ranker_graph(config), name=reg.RANKER, vocab=list(data.vocab),
                          dataset="ml-100k", protocol=dict(parts.summary), metrics={}, registry=root,
                          extra={"pipeline": spec})
    return root, version_dir.name


@pytest.fixture
def registry(published: tuple[Path, str], tmp_path: Path) -> Path:
    return Path(shutil.copytree(published[0], tmp_path / "registry"))


@pytest.fixture
def version(published: tuple[Path, str]) -> str:
    return published[1]


def loader(registry: Path, settings: Settings, *, fold_ranker: bool = False) -> RegistryLoader:
    return RegistryLoader(registry, settings.data_dir, fold_ranker=fold_ranker)


def edit_manifest(registry: Path, version: str, change: Callable[[dict[str, Any]], None]) -> None:
    directory = reg.version_dir(registry, reg.RANKER, version)
    manifest = reg.read_manifest(directory)
    change(manifest)
    reg.write_manifest(directory, manifest)


def test_the_current_version_loads_into_a_checked_state(registry: Path, version: str, base_settings: Settings) -> None:
    state = loader(registry, base_settings, fold_ranker=True).load()
    assert state.versions == {reg.RANKER: version} and state.ranker_version == version
    assert state.dataset == "ml-100k" and len(state.vocab) == state.pipeline.table.n_items + 1 == 1683
    assert state.pipeline.sources == SOURCES and len(state.popular) == 1682


def test_a_named_version_is_loaded_whatever_current_says(registry: Path, version: str,
                                                         base_settings: Settings) -> None:
    newer = Path(shutil.copytree(reg.version_dir(registry, reg.RANKER, version),
                                 reg.version_dir(registry, reg.RANKER, "29990101T000000Z")))
    reg.move_pointer(registry, reg.RANKER, newer.name, "test")
    assert loader(registry, base_settings).load(version).ranker_version == version
    assert loader(registry, base_settings).load().ranker_version == newer.name


def test_without_a_current_version_there_is_nothing_to_load(tmp_path: Path, base_settings: Settings) -> None:
    with pytest.raises(LoadError, match="no deepfm version is CURRENT"):
        loader(tmp_path, base_settings).load()


def _corrupt(registry: Path, version: str) -> None:
    path = reg.version_dir(registry, reg.RANKER, version) / reg.MODEL
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _point_outside(registry: Path, version: str) -> None:
    (registry / reg.RANKER / reg.POINTER).write_text("../sasrec\n")


def _point_absolute(registry: Path, version: str) -> None:
    (registry / reg.RANKER / reg.POINTER).write_text("/etc\n")


def _link_outside(registry: Path, version: str) -> None:
    """A version whose name is valid but whose directory is a link to a copy outside the registry."""
    outside = Path(shutil.copytree(reg.version_dir(registry, reg.RANKER, version), registry.parent / "outside"))
    (registry / reg.RANKER / "linked").symlink_to(outside, target_is_directory=True)
    (registry / reg.RANKER / reg.POINTER).write_text("linked\n")


def _other_vocab(registry: Path, version: str) -> None:
    directory = reg.version_dir(registry, reg.RANKER, version)
    vocab = reg.read_vocab(directory, reg.read_manifest(directory)) or []
    reg.write_vocab(directory, [vocab[0], vocab[2], vocab[1], *vocab[3:]])


def _manifest(change: Callable[[dict[str, Any]], None]) -> Callable[[Path, str], None]:
    return lambda registry, version: edit_manifest(registry, version, change)


@pytest.mark.parametrize(("damage", "needle"), [
    (_corrupt, "sha256"),
    (_point_outside, "version name '../sasrec' is not valid"),
    (_manifest(lambda m: m.pop("pipeline")), "no pipeline spec"),
    (_manifest(lambda m: m.update(kind="sequence")), "holds a sequence model"),
    (_manifest(lambda m: m["config"]["sparse_sizes"].__setitem__(0, 100)), "embeds 99 items, the data has 1682"),
    (_other_vocab, "another item vocabulary than dataset ml-100k"),
    (_manifest(lambda m: m["pipeline"].update(genres=["Drama"])), "genre vocabulary differs"),
    (_manifest(lambda m: m["protocol"].update(interactions=5)), "does not reproduce the split"),
    (_manifest(lambda m: m["pipeline"].update(sources=["sasrec", "pop"])), "needs sasrec, which has no version"),
    (_manifest(lambda m: m["pipeline"].update(sources=["sasrec", "pop"], generator_versions={"sasrec": "../x"})),
     "version name '../x' is not valid"),
    (_point_absolute, "version name '/etc' is not valid"),
    (_link_outside, "outside the registry"),
    (_manifest(lambda m: m["pipeline"].update(sources=["sasrec", "pop"], generator_versions={"sasrec": "../../x"})),
     "version name '../../x' is not valid"),
    (_manifest(lambda m: m.update(dataset="../../etc")), "unknown dataset '../../etc'"),
    (_manifest(lambda m: m.update(dataset="snapshot-x/../../../etc")), "unknown dataset 'snapshot-x/../../../etc'"),
], ids=["corrupt-graph", "pointer-outside", "no-spec", "not-a-ranker", "item-count", "vocab", "genres", "split",
        "missing-generator", "generator-outside", "pointer-absolute", "version-linked-outside",
        "generator-far-outside", "dataset-outside", "snapshot-dataset-outside"])
def test_a_bad_version_is_refused_and_the_loader_still_loads_a_good_one(
        registry: Path, version: str, base_settings: Settings, damage: Callable[[Path, str], None],
        needle: str) -> None:
    good = Path(shutil.copytree(reg.version_dir(registry, reg.RANKER, version),
                                reg.version_dir(registry, reg.RANKER, "good")))
    damage(registry, version)
    one = loader(registry, base_settings)
    with pytest.raises(LoadError) as info:
        one.load()
    assert needle in str(info.value)
    assert one.load(good.name).ranker_version == "good"


def test_a_neural_generator_must_come_from_the_ranker_split_and_vocabulary(registry: Path, version: str,
                                                                           base_settings: Settings) -> None:
    directory = reg.version_dir(registry, reg.RANKER, version)
    manifest = reg.read_manifest(directory)
    vocab = reg.read_vocab(directory, manifest) or []
    config = SASRecConfig(n_items=len(vocab) - 1, max_len=4, d_model=8, n_layers=1, n_heads=1)
    torch.manual_seed(0)
    edit_manifest(registry, version, lambda m: m["pipeline"].update(sources=["sasrec", "pop"]))
    publish(SASRec(config), config, name="sasrec", vocab=vocab, dataset="ml-100k", protocol={"protocol": "other"},
            metrics={}, registry=registry)
    with pytest.raises(LoadError, match="trained on another split than deepfm"):
        loader(registry, base_settings).load()
    publish(SASRec(config), config, name="sasrec", vocab=[vocab[0], *reversed(vocab[1:])], dataset="ml-100k",
            protocol=manifest["protocol"], metrics={}, registry=registry)
    with pytest.raises(LoadError, match="sasrec version .* has another item vocabulary"):
        loader(registry, base_settings).load()


def test_a_graph_replaced_after_its_hash_is_checked_is_never_served(
        registry: Path, version: str, base_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph is hashed and run from the same bytes: a file swapped right after the hash was taken
    (the seam: ``hashlib.sha256``'s digest of the published graph) cannot be what serves."""
    directory = reg.version_dir(registry, reg.RANKER, version)
    manifest = reg.read_manifest(directory)
    config = DeepFMConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in manifest["config"].items()})
    torch.manual_seed(1)
    other = export_onnx(DeepFM(config), tmp_path / "other.onnx", ranker_graph(config)).read_bytes()
    N, F = 64, len(config.sparse_sizes)
    sample = (np.zeros((N, F), np.int64), np.zeros((N, config.n_multi), np.float32),
              np.random.default_rng(0).standard_normal((N, config.n_dense)).astype(np.float32))
    published_scores = load_ranker(directory).score(*sample)
    other_scores = ort.InferenceSession(other, providers=["CPUExecutionProvider"]).run(
        None, dict(zip(("sparse", "multi", "dense"), sample, strict=True)))[0]
    assert not np.allclose(published_scores, other_scores, atol=1e-4)

    sha256, swapped = hashlib.sha256, []

    class SwapAfterHash:
        def __init__(self, data: bytes = b"") -> None:
            self._h = sha256(data)

        def update(self, data: bytes) -> None:
            self._h.update(data)

        def hexdigest(self) -> str:
            digest = self._h.hexdigest()
            if digest == manifest["sha256"] and not swapped:
                (directory / reg.MODEL).write_bytes(other)
                swapped.append(True)
            return digest

    monkeypatch.setattr(hashlib, "sha256", SwapAfterHash)
    state = loader(registry, base_settings, fold_ranker=True).load()
    assert swapped, "the seam did not fire"
    served = np.asarray(state.pipeline.ranker(*sample))
    np.testing.assert_allclose(served, published_scores, atol=1e-4)
