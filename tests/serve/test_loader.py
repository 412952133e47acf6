"""``RegistryLoader`` on a small release: an untrained DeepFM over ml-100k with two cheap sources (``itemknn``
and ``pop``), published once the way ``streamrec train-ranker`` publishes (``publish_ranker``: each
generator as arrays, the item table in the ranker's version). Each test changes a copy of it and checks
that the loader refuses what it must, says why, and still loads a good release afterwards."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch

from streamrec import registry as reg
from streamrec.data.movielens import load
from streamrec.errors import LoadError
from streamrec.eval.factory import create
from streamrec.eval.protocols import LeaveOneOut, split
from streamrec.export import export_onnx, load_generator, load_ranker, publish, publish_generator, ranker_graph
from streamrec.models.deepfm import DeepFM, DeepFMConfig
from streamrec.models.sasrec import SASRec, SASRecConfig
from streamrec.offline.assemble import publish_ranker
from streamrec.offline.ranker_fit import RankerFit
from streamrec.rank.features import ItemTable, dense_names, sparse_sizes
from streamrec.rank.pipeline import Pipeline
from streamrec.serve.loader import RegistryLoader

SOURCES = ("itemknn", "pop")


@dataclass(frozen=True)
class Published:
    root: Path
    version: str  # the ranker's
    protocol: dict[str, Any]
    vocab: list[str]


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Published:
    """A registry holding one complete release (an untrained ranker over fitted cheap sources)."""
    from streamrec.settings import Settings

    data = load("ml-100k", Settings.from_env().data_dir)
    parts = split(data, LeaveOneOut())
    generators = {name: create(name).fit(parts.train) for name in SOURCES}
    table = ItemTable.build(parts.train, generators["itemknn"].similarity)  # type: ignore[attr-defined]
    pipeline = Pipeline(generators, table, {s: 50 for s in SOURCES})
    config = DeepFMConfig(sparse_sizes=sparse_sizes(table, len(SOURCES)), n_multi=len(table.genre_names),
                          n_dense=len(dense_names(SOURCES)), d_embed=4, hidden=(8,))
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("loader-registry")
    version_dir = publish_ranker(RankerFit(DeepFM(config)), pipeline, parts, vocab=list(data.vocab),
                                 dataset="ml-100k", metrics={}, registry=root)
    return Published(root, version_dir.name, json.loads(json.dumps(dict(parts.summary))), list(data.vocab))


@pytest.fixture
def registry(published: Published, tmp_path: Path) -> Path:
    return Path(shutil.copytree(published.root, tmp_path / "registry"))


@pytest.fixture
def version(published: Published) -> str:
    return published.version


def ranker_dir(registry: Path, version: str) -> Path:
    return reg.version_dir(registry, reg.RANKER, version)


def members(registry: Path, version: str) -> dict[str, str]:
    """Source -> the generator version the ranker ``version`` names."""
    return dict(reg.read_manifest(ranker_dir(registry, version))["pipeline"]["generator_versions"])


def member_dir(registry: Path, version: str, name: str) -> Path:
    return reg.version_dir(registry, name, members(registry, version)[name])


def edit_manifest(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    manifest = reg.read_manifest(directory)
    change(manifest)
    reg.write_manifest(directory, manifest)


def copy_release(registry: Path, version: str, new: str) -> None:
    """Ranker ``version`` and every member it names, copied as versions called ``new`` (the copy names its
    own members): a release that no damage to the original touches."""
    for name, member in members(registry, version).items():
        shutil.copytree(reg.version_dir(registry, name, member), reg.version_dir(registry, name, new))
    target = Path(shutil.copytree(ranker_dir(registry, version), ranker_dir(registry, new)))
    edit_manifest(target, lambda m: m["pipeline"].update(generator_versions={s: new for s in SOURCES}))


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def array_file(directory: Path, key: str, array: str) -> Path:
    return directory / reg.read_manifest(directory)[key][array]["file"]


def test_the_current_version_loads_into_a_checked_state(registry: Path, version: str) -> None:
    state = RegistryLoader(registry).load()
    assert state.versions == {reg.RANKER: version, **members(registry, version)} and state.ranker_version == version
    assert state.dataset == "ml-100k" and len(state.vocab) == state.pipeline.table.n_items + 1 == 1683
    assert state.pipeline.sources == SOURCES and len(state.popular) == 1682
    assert state.pipeline.table.similarity is not None and state.pipeline.table.similarity.nnz > 0


def test_a_named_version_is_loaded_whatever_current_says(registry: Path, version: str) -> None:
    newer = Path(shutil.copytree(ranker_dir(registry, version), ranker_dir(registry, "29990101T000000Z")))
    reg.move_pointer(registry, reg.RANKER, newer.name, "test")
    assert RegistryLoader(registry).load(version).ranker_version == version
    assert RegistryLoader(registry).load().ranker_version == newer.name


def test_without_a_current_version_there_is_nothing_to_load(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="no deepfm version is CURRENT"):
        RegistryLoader(tmp_path).load()


# ---------------------------------------------------------------- damage, one thing at a time
# Each takes (registry, ranker version) and breaks one part of that release.


def _corrupt_graph(registry: Path, version: str) -> None:
    flip_a_byte(ranker_dir(registry, version) / reg.MODEL)


def _point(text: str) -> Callable[[Path, str], None]:
    return lambda registry, version: (registry / reg.RANKER / reg.POINTER).write_text(text + "\n")


def _link_outside(registry: Path, version: str) -> None:
    """A version whose name is valid but whose directory is a link to a copy outside the registry."""
    outside = Path(shutil.copytree(ranker_dir(registry, version), registry.parent / "outside"))
    (registry / reg.RANKER / "linked").symlink_to(outside, target_is_directory=True)
    (registry / reg.RANKER / reg.POINTER).write_text("linked\n")


def _other_vocab(registry: Path, version: str) -> None:
    directory = ranker_dir(registry, version)
    vocab = reg.read_vocab(directory, reg.read_manifest(directory)) or []
    reg.write_vocab(directory, [vocab[0], vocab[2], vocab[1], *vocab[3:]])


def _ranker(change: Callable[[dict[str, Any]], None]) -> Callable[[Path, str], None]:
    """An edit of the ranker's manifest."""
    return lambda registry, version: edit_manifest(ranker_dir(registry, version), change)


def _spec(**changes: Any) -> Callable[[Path, str], None]:
    return _ranker(lambda m: m["pipeline"].update(**changes))


def _member(name: str, change: Callable[[dict[str, Any]], None]) -> Callable[[Path, str], None]:
    """An edit of a member's manifest."""
    return lambda registry, version: edit_manifest(member_dir(registry, version, name), change)


def _corrupt_member_array(registry: Path, version: str) -> None:
    flip_a_byte(array_file(member_dir(registry, version, "itemknn"), "arrays", "similarity.data"))


def _lie_about(field: str, value: object) -> Callable[[Path, str], None]:
    return _member("pop", lambda m: m["arrays"]["popularity"].__setitem__(field, value))


def _missing_member_array(registry: Path, version: str) -> None:
    array_file(member_dir(registry, version, "pop"), "arrays", "popularity").unlink()


def _missing_table_array(registry: Path, version: str) -> None:
    array_file(ranker_dir(registry, version), "item_table", "log_pop").unlink()


def _corrupt_table_array(registry: Path, version: str) -> None:
    flip_a_byte(array_file(ranker_dir(registry, version), "item_table", "genres"))


def _republished_pop(registry: Path, version: str, **kwargs: Any) -> None:
    """``pop`` published again (from its own arrays) with ``kwargs`` changed, and named by the ranker."""
    directory = member_dir(registry, version, "pop")
    manifest = reg.read_manifest(directory)
    args: dict[str, Any] = {"vocab": reg.read_vocab(ranker_dir(registry, version), {}), "dataset": "ml-100k",
                            "protocol": manifest["protocol"], **kwargs}
    other = publish_generator(load_generator(directory), registry=registry, point=False, **args)
    versions = {**members(registry, version), "pop": other.name}
    _spec(generator_versions=versions)(registry, version)


def _pop_on_another_split(registry: Path, version: str) -> None:
    _republished_pop(registry, version, protocol={"protocol": "leave-one-out", "interactions": 5})


def _pop_with_another_vocab(registry: Path, version: str) -> None:
    vocab = reg.read_vocab(ranker_dir(registry, version), {}) or []
    _republished_pop(registry, version, vocab=[vocab[0], *reversed(vocab[1:])])


DAMAGE: list[tuple[str, Callable[[Path, str], None], str]] = [
    # the ranker's own version
    ("corrupt-graph", _corrupt_graph, r"model\.onnx has sha256 \w+, but its manifest says"),
    ("pointer-outside", _point("../sasrec"), "version name '../sasrec' is not valid"),
    ("pointer-absolute", _point("/etc"), "version name '/etc' is not valid"),
    ("version-linked-outside", _link_outside, "outside the registry"),
    ("no-spec", _ranker(lambda m: m.pop("pipeline")), "does not name a whole release .* publish it again"),
    ("no-item-table", _ranker(lambda m: m.pop("item_table")),
     "predates releases made of artifacts: publish it again with `streamrec train-ranker`"),
    ("not-a-ranker", _ranker(lambda m: m.update(kind="sequence")), "holds a sequence model, not a ranker model"),
    ("item-count", _ranker(lambda m: m["config"]["sparse_sizes"].__setitem__(0, 100)),
     "embeds 99 items, its item table has 1682 and its vocabulary 1682"),
    ("vocab", _other_vocab, "itemknn version .* has another item vocabulary than deepfm"),
    ("genres", _spec(genres=["Drama"]), "item table has .* genre columns and 1 genre names"),
    ("split", _ranker(lambda m: m["protocol"].update(interactions=5)),
     "itemknn version .* was fitted on another split than deepfm"),
    ("dataset-outside", _ranker(lambda m: m.update(dataset="../../etc")), "unknown dataset '../../etc'"),
    ("snapshot-dataset-outside", _ranker(lambda m: m.update(dataset="snapshot-x/../../../etc")),
     "unknown dataset 'snapshot-x/../../../etc'"),
    ("missing-table-array", _missing_table_array, r"cannot map .*item_table\.log_pop\.npy"),
    ("corrupt-table-array", _corrupt_table_array, r"item_table\.genres\.npy has sha256"),
    # the members it names
    ("source-without-version", _spec(sources=["sasrec", *SOURCES]), "names no version of its source sasrec"),
    ("generator-outside", _spec(sources=["sasrec", *SOURCES], generator_versions={"sasrec": "../x"}),
     "version name '../x' is not valid"),
    ("generator-far-outside", _spec(sources=["sasrec", *SOURCES], generator_versions={"sasrec": "../../x"}),
     "version name '../../x' is not valid"),
    ("generator-version-absent", _spec(generator_versions={"itemknn": "29990101T000000Z", "pop": "x"}),
     "is not a model version"),
    ("corrupt-generator-array", _corrupt_member_array, r"similarity\.data\.npy has sha256 \w+, but its manifest says"),
    ("array-dtype-lies", _lie_about("dtype", "<f4"), r"popularity\.npy holds <f8 \[1683\], its manifest says <f4"),
    ("array-shape-lies", _lie_about("shape", [1682]), r"popularity\.npy holds <f8 \[1683\], its manifest says <f8"),
    ("missing-generator-array", _missing_member_array, r"cannot map .*popularity\.npy"),
    ("generator-on-another-split", _pop_on_another_split, "pop version .* was fitted on another split than deepfm"),
    ("generator-with-another-vocab", _pop_with_another_vocab, "pop version .* has another item vocabulary"),
    ("generator-of-another-kind", _member("pop", lambda m: m.update(kind="sequence")),
     "holds a sequence model called 'pop', not one of the generators"),
    ("generator-of-unknown-name", _member("pop", lambda m: m.update(name="lightgcn")),
     "holds a generator model called 'lightgcn', not one of the generators"),
]


@pytest.mark.parametrize(("damage", "needle"), [(d, n) for _, d, n in DAMAGE], ids=[i for i, _, _ in DAMAGE])
def test_a_bad_release_is_refused_and_the_loader_still_loads_a_good_one(
        registry: Path, version: str, damage: Callable[[Path, str], None], needle: str) -> None:
    copy_release(registry, version, "good")
    damage(registry, version)
    one = RegistryLoader(registry, fold_ranker=False)
    with pytest.raises(LoadError, match=needle):
        one.load()
    state = one.load("good")
    assert state.versions == {reg.RANKER: "good", **{s: "good" for s in SOURCES}}


def test_a_neural_generator_must_come_from_the_ranker_split_and_vocabulary(registry: Path, version: str) -> None:
    manifest = reg.read_manifest(ranker_dir(registry, version))
    vocab = reg.read_vocab(ranker_dir(registry, version), manifest) or []
    config = SASRecConfig(n_items=len(vocab) - 1, max_len=4, d_model=8, n_layers=1, n_heads=1)
    torch.manual_seed(0)

    def name_sasrec(published: Path) -> None:
        _spec(sources=["sasrec", *SOURCES],
              generator_versions={**members(registry, version), "sasrec": published.name})(registry, version)

    name_sasrec(publish(SASRec(config), config, name="sasrec", vocab=vocab, dataset="ml-100k",
                        protocol={"protocol": "other"}, metrics={}, registry=registry))
    with pytest.raises(LoadError, match="sasrec version .* was fitted on another split than deepfm"):
        RegistryLoader(registry).load()
    name_sasrec(publish(SASRec(config), config, name="sasrec", vocab=[vocab[0], *reversed(vocab[1:])],
                        dataset="ml-100k", protocol=manifest["protocol"], metrics={}, registry=registry))
    with pytest.raises(LoadError, match="sasrec version .* has another item vocabulary"):
        RegistryLoader(registry).load()


def test_a_new_ranker_over_the_same_members_reuses_them_and_reads_no_member_file(registry: Path, version: str) -> None:
    """The loader keeps members between loads: a second ranker naming the same generator versions loads
    even when their files are gone (the first load's mappings stay valid), and serves the same objects.
    Members no release uses any more are let go: a third load that needs them reads them again."""
    one = RegistryLoader(registry)
    first = one.load(version)
    copy_release(registry, version, "other")  # other members, to switch to and back
    newer = Path(shutil.copytree(ranker_dir(registry, version), ranker_dir(registry, "29990101T000000Z")))
    for name, member in members(registry, version).items():
        shutil.rmtree(reg.version_dir(registry, name, member))
    second = one.load(newer.name)
    assert second.ranker_version == newer.name and second.versions == {**first.versions, reg.RANKER: newer.name}
    for name in SOURCES:
        assert second.pipeline.generators[name] is first.pipeline.generators[name], name
    assert one.load("other").versions == {reg.RANKER: "other", **{s: "other" for s in SOURCES}}
    with pytest.raises(LoadError, match="is not a model version"):  # the first members were let go
        one.load(newer.name)


def test_a_refused_release_leaves_the_members_as_they_were(registry: Path, version: str) -> None:
    one = RegistryLoader(registry)
    first = one.load(version)
    newer = Path(shutil.copytree(ranker_dir(registry, version), ranker_dir(registry, "29990101T000000Z")))
    _pop_on_another_split(registry, newer.name)
    with pytest.raises(LoadError, match="fitted on another split"):
        one.load(newer.name)
    for name, member in members(registry, version).items():
        shutil.rmtree(reg.version_dir(registry, name, member))
    again = one.load(version)  # still cached: the refused load neither dropped nor replaced them
    assert again.pipeline.generators["itemknn"] is first.pipeline.generators["itemknn"]


SERVE_A_RELEASE = """
import sys
from streamrec.serve.server import RecommendServer
from streamrec.settings import Settings

server = RecommendServer(Settings.from_env(), port=0)
state = server.loader.load()
print(state.ranker_version, len(state.vocab))
banned = ("streamrec.data.datasets", "streamrec.data.movielens", "streamrec.eval", "streamrec.train",
          "streamrec.offline", "torch")
print(sorted(m for m in sys.modules if m in banned or m.startswith(tuple(b + "." for b in banned))))
"""


def test_the_server_loads_a_release_without_the_dataset_torch_or_offline_code(registry: Path, version: str,
                                                                            tmp_path: Path) -> None:
    """A fresh interpreter, as a server pod starts: no data directory to read, and none of the offline
    code (dataset loaders, evaluation, training, torch) is even imported."""
    empty = tmp_path / "no-data"
    empty.mkdir()
    env = {**os.environ, "STREAMREC_REGISTRY": str(registry), "STREAMREC_DATA_DIR": str(empty)}
    done = subprocess.run([sys.executable, "-c", SERVE_A_RELEASE], check=False, env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    loaded, imported = done.stdout.strip().splitlines()[-2:]
    assert loaded == f"{version} 1683"
    assert imported == "[]", f"serving imported offline code: {imported}"
    assert not any(empty.iterdir())


def test_a_graph_replaced_after_its_hash_is_checked_is_never_served(
        registry: Path, version: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The graph is hashed and run from the same bytes: a file swapped right after the hash was taken
    (the seam: ``hashlib.sha256``'s digest of the published graph) cannot be what serves."""
    directory = ranker_dir(registry, version)
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
    state = RegistryLoader(registry, fold_ranker=True).load()
    assert swapped, "the seam did not fire"
    served = np.asarray(state.pipeline.ranker(*sample))
    np.testing.assert_allclose(served, published_scores, atol=1e-4)
