"""``streamrec bench arrays`` on a tiny registry built here: two published generators and a ranker
manifest with an item table. Every way loads every member, and loads the same arrays; the command
prints the table and writes the JSON. Timings are not checked (two repeats: a second or so)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from streamrec import registry as reg
from streamrec.bench.arrays import (
    WAYS,
    ArraysBenchConfig,
    load_all,
    release_arrays,
    run_arrays_bench,
    same_arrays,
    write_both,
)
from streamrec.cli import main
from streamrec.errors import ConfigError
from streamrec.export.arrays import write_arrays
from streamrec.export.generators import publish_generator
from streamrec.models import ItemKNN, MostPopular
from tests.models.helpers import MakeData, mixed_data

N_ITEMS = 30
PROTOCOL = {"name": "A", "seed": 0}


def _registry(root: Path, make_data: MakeData) -> Path:
    """pop and itemknn fitted on tiny data and published, and a ranker version that names them and
    holds an item table (bool, float, 0-d and CSR-like arrays, an empty one among them)."""
    data = mixed_data(make_data, n_items=N_ITEMS)
    vocab = ["", *(f"i{i}" for i in range(1, N_ITEMS + 1))]
    versions = {}
    for model in (MostPopular(), ItemKNN()):
        published = publish_generator(model.fit(data), vocab=vocab, dataset="ml-100k", protocol=PROTOCOL,
                                      registry=root)
        versions[model.name] = published.name
    version, staging = reg.stage_version(root, reg.RANKER)
    rng = np.random.default_rng(0)
    table = {"n_items": np.array(N_ITEMS, np.int64), "genres": rng.random((N_ITEMS + 1, 4)) < 0.3,
             "log_pop": rng.random(N_ITEMS + 1).astype(np.float32), "similarity_data": np.zeros(0, np.float32),
             "similarity_indptr": np.zeros(N_ITEMS + 2, np.int64)}
    reg.write_manifest(staging, {"name": reg.RANKER, "version": version,
                                 "pipeline": {"sources": sorted(versions), "generator_versions": versions},
                                 "item_table": write_arrays(staging, table, prefix="item_table_")})
    reg.add_version(staging, root, reg.RANKER, version)
    reg.move_pointer(root, reg.RANKER, version, "test")
    return root


@pytest.fixture
def registry(tmp_path: Path, make_data: MakeData) -> Path:
    return _registry(tmp_path / "registry", make_data)


def test_the_release_gives_every_generator_and_the_item_table(registry: Path) -> None:
    release, members = release_arrays(registry)
    assert set(release) == {"pop", "itemknn", reg.RANKER}
    assert set(members) == {"pop", "itemknn", f"{reg.RANKER} item_table"}
    assert members[f"{reg.RANKER} item_table"]["genres"].dtype == np.bool_


def test_every_way_loads_the_same_arrays_and_only_mapped_ones_are_read_only(registry: Path, tmp_path: Path) -> None:
    _, members = release_arrays(registry)
    for i, (member, arrays) in enumerate(members.items()):
        loaded = load_all(write_both(arrays, tmp_path / f"w{i}"))
        assert set(loaded) == {w.name for w in WAYS}
        for way in WAYS:
            assert same_arrays(loaded[way.name], arrays), (member, way.name)
            # a read-only mapping of the file is what the processes of a server share; a copy is writable
            assert all(a.flags.writeable != way.shared for a in loaded[way.name].values()), (member, way.name)


def test_same_arrays_sees_a_changed_value_dtype_or_name() -> None:
    a = {"x": np.array([1.0, np.nan], np.float32)}
    assert same_arrays(a, {"x": np.array([1.0, np.nan], np.float32)})
    assert not same_arrays(a, {"x": np.array([2.0, np.nan], np.float32)})
    assert not same_arrays(a, {"x": np.array([1.0, np.nan], np.float64)})
    assert not same_arrays(a, {"y": a["x"]})


def test_the_command_times_every_way_for_every_member(registry: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    assert main(["bench", "arrays", "--registry", str(registry), "--repeats", "2", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["members"]) == {"pop", "itemknn", f"{reg.RANKER} item_table"}
    for row in report["members"].values():
        assert row["bytes"] > 0 and row["npy_bytes"] > 0 and row["safetensors_bytes"] > 0
        assert set(row["ms"]) == {w.name for w in WAYS} and all(ms > 0 for ms in row["ms"].values())
    assert report["totals"]["ms"]["read_arrays"] == pytest.approx(
        sum(r["ms"]["read_arrays"] for r in report["members"].values()))
    assert {w["name"]: w["shared"] for w in report["ways"]} == {w.name: w.shared for w in WAYS}
    table = capsys.readouterr().out
    assert all(m in table for m in report["members"]) and all(w.name in table for w in WAYS)


def test_a_registry_without_a_release_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no CURRENT"):
        run_arrays_bench(ArraysBenchConfig(tmp_path, repeats=1))
    with pytest.raises(ConfigError, match="at least 1"):
        run_arrays_bench(ArraysBenchConfig(tmp_path, repeats=0))
