"""The item index: it finds the exact top-k by inner product (within its recall), its scores are the
inner products, and it comes back from its bytes only when they are the recorded ones (seen items are
filtered in ``test_source.py``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamrec.errors import ConfigError, LoadError
from streamrec.retrieval.ann import (
    KINDS,
    AnnConfig,
    build_index,
    exact_top_k,
    load_index,
    recall_at,
)


def clustered(n: int, d: int = 16, clusters: int = 20, seed: int = 0) -> np.ndarray:
    """Vectors in clusters, with norms that differ (what makes inner product unlike distance)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, d))
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, d))
    return (x * rng.uniform(0.5, 2.0, size=(n, 1))).astype(np.float32)


@pytest.fixture(scope="module")
def catalogue() -> tuple[np.ndarray, np.ndarray]:
    items = clustered(4000)
    queries = clustered(50, seed=1)
    return items, queries


def test_exact_top_k_is_the_argsort_of_the_products(catalogue: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = catalogue
    scores, ids = exact_top_k(queries, items, 30)
    full = queries @ items.T
    np.testing.assert_array_equal(ids, np.argsort(-full, axis=1, kind="stable")[:, :30])
    np.testing.assert_allclose(scores, np.take_along_axis(full, ids, axis=1), rtol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_finds_the_largest_inner_products_with_their_scores(
        kind: str, catalogue: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = catalogue
    index = build_index(items, AnnConfig(kind=kind, nprobe=16))  # type: ignore[arg-type]
    scores, ids = index.search(queries, 50)
    _, truth = exact_top_k(queries, items, 50)
    assert recall_at(ids, truth) >= 0.9
    found = ids >= 0
    exact = np.einsum("bd,bkd->bk", queries, items[np.where(found, ids, 0)])
    np.testing.assert_allclose(scores[found], exact[found], rtol=1e-3, atol=1e-3)  # from the distances, exactly
    assert (np.diff(scores, axis=1) <= 1e-4).all()  # best first


def test_an_index_scanning_every_list_is_exact(catalogue: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = catalogue
    config = AnnConfig(nlist=16, nprobe=16)
    _, ids = build_index(items, config).search(queries, 100)
    _, truth = exact_top_k(queries, items, 100)
    assert recall_at(ids, truth) == 1.0


@pytest.mark.parametrize("kind", KINDS)
def test_an_index_comes_back_only_from_its_recorded_bytes(kind: str, tmp_path: Path,
                                                         catalogue: tuple[np.ndarray, np.ndarray]) -> None:
    items, queries = catalogue
    config = AnnConfig(kind=kind)  # type: ignore[arg-type]
    index = build_index(items[:500], config)
    path = tmp_path / "index.ann"
    sha = index.save(path)
    back = load_index(path, sha, index.max_norm, config)
    assert (back.n, back.dim) == (500, items.shape[1])
    np.testing.assert_array_equal(back.search(queries, 20)[1], index.search(queries, 20)[1])
    with pytest.raises(LoadError, match="not the one recorded"):
        load_index(path, "0" * 64, index.max_norm, config)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(LoadError, match="not the one recorded"):
        load_index(path, sha, index.max_norm, config)
    with pytest.raises(LoadError, match="cannot read"):
        load_index(tmp_path / "missing.ann", sha, index.max_norm, config)


def test_bytes_that_hash_right_but_are_no_index_are_refused(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "index.ann"
    path.write_bytes(b"not an index at all")
    with pytest.raises(LoadError, match="is not a ivf index"):
        load_index(path, hashlib.sha256(b"not an index at all").hexdigest(), 1.0, AnnConfig())


def test_bad_settings_and_inputs_are_refused() -> None:
    with pytest.raises(ConfigError, match="unknown index kind"):
        AnnConfig(kind="lsh")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="positive"):
        AnnConfig(nprobe=0)
    with pytest.raises(ConfigError, match="at least one item"):
        build_index(np.zeros((0, 4), np.float32))
    index = build_index(clustered(100, d=4))
    with pytest.raises(ConfigError, match=r"\(rows, 4\)"):
        index.search(np.zeros((2, 5), np.float32), 3)
    assert AnnConfig().lists_for(10) == 1 and AnnConfig().lists_for(10**6) == 2000
