from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec.errors import ArtifactError
from streamrec.rank.candidates import union_top_n
from streamrec.rank.features import (
    EVENT_TYPE_CODES,
    ItemTable,
    SessionContext,
    build_features,
    dense_names,
    sparse_sizes,
    wide_crosses,
)
from tests.models.helpers import MakeData, frozen, mixed_data, numeric_state, tiny_items

N_ITEMS = 6


@pytest.fixture
def table(make_data: MakeData) -> ItemTable:
    items = tiny_items(N_ITEMS, genres=["Drama", "Comedy|Drama", "Comedy", "", "Drama", "Horror"],
                       years=[1950, 1999, 2000, None, 1950, 1975])
    data = make_data([[1, 2, 3], [1, 2, 5], [2, 3, 1], [4, 6]], n_items=N_ITEMS, items=items)
    return ItemTable.build(data)


def test_item_table(table: ItemTable) -> None:
    assert table.genre_names == ("Comedy", "Drama", "Horror")
    assert table.genres[2].tolist() == [1, 1, 0] and table.genres[4].sum() == 0
    assert table.year_bucket[4] == 0 and table.year_bucket[1] == table.year_bucket[5] > 0
    assert table.log_pop[2] == pytest.approx(np.log1p(3)) and table.log_pop[0] == 0


def test_features_layout_and_values(table: ItemTable) -> None:
    rng = np.random.default_rng(0)
    scores = {s: rng.random((2, N_ITEMS + 1)).astype(np.float32) for s in ("a", "b")}
    histories = [np.array([1, 2]), np.array([3])]
    cands = union_top_n(scores, {"a": 3, "b": 2}, histories)
    contexts = [SessionContext(times=np.array([0, 3600]), now=3 * 3600.0, last_type="click"), SessionContext()]
    f = build_features(cands, histories, table, contexts)
    B, C = cands.items.shape
    assert f.sparse.shape == (B, C, len(sparse_sizes(table, 2)))
    assert f.dense.shape == (B, C, len(dense_names(("a", "b"))))
    assert f.multi.shape == (B, C, 3)
    mask = cands.mask
    assert (f.sparse[..., 0] == cands.items).all()
    assert (f.sparse[0, mask[0], 2] == EVENT_TYPE_CODES["click"]).all() and (f.sparse[1, mask[1], 2] == 0).all()
    assert (f.sparse[..., 3][mask] == (cands.ranks > 0).sum(axis=2)[mask]).all()
    for b in range(B):  # z-scores are centred within each list
        assert f.dense[b, mask[b], 0].mean() == pytest.approx(0.0, abs=1e-5)
    names = dense_names(("a", "b"))
    recency = f.dense[..., names.index("log_recency_h")]
    assert recency[0, 0] == pytest.approx(np.log1p(2.0)) and recency[1, 0] == 0
    sim = f.dense[..., names.index("sim_last")]
    expected = table.similarity[2].toarray()[0, cands.items[0]]
    assert np.allclose(sim[0][mask[0]], expected[mask[0]])
    assert (f.dense[~mask] == 0).all()
    assert np.isfinite(f.dense).all()


def test_wide_crosses_name_the_features_they_mean_and_make_a_valid_wide_and_deep(table: ItemTable) -> None:
    from streamrec.models.widedeep import WideDeep, WideDeepConfig

    sources = ("a", "b")
    names = dense_names(sources)
    crosses = wide_crosses(sources)
    dense = {int(i.split(":")[1]) for pair in crosses for i in pair if i.startswith("dense:")}
    assert {names[i] for i in dense} == {"a_rr", "b_rr", "log_pop", "genre_cos_last5"}
    assert ("sparse:3", f"dense:{names.index('log_pop')}") in crosses  # how many sources agree x popularity
    assert ("multi", "sparse:1") in crosses  # genre x era
    config = WideDeepConfig(sparse_sizes=sparse_sizes(table, len(sources)), n_multi=table.genres.shape[1],
                            n_dense=len(names), crosses=crosses)  # checks every input against the layout
    assert len(WideDeep(config).cross_w) == len(crosses)


@pytest.mark.parametrize("mmap", [False, True])
def test_state_round_trip_gives_identical_features(make_data: MakeData, tmp_path: Path, mmap: bool) -> None:
    data = mixed_data(make_data)
    table = ItemTable.build(data)
    state = table.state()
    numeric_state(state)
    loaded = frozen(state, tmp_path if mmap else None)
    restored = ItemTable.from_state(loaded, list(table.genre_names))
    assert restored.genre_names == table.genre_names and restored.n_items == table.n_items
    assert np.shares_memory(restored.genres, loaded["genres"])  # used as loaded, not copied
    assert np.shares_memory(restored.similarity.data, loaded["similarity.data"])
    rng = np.random.default_rng(0)
    scores = {s: rng.random((4, data.n_items + 1)).astype(np.float32) for s in ("a", "b")}
    histories = [np.array([1, 2, 3]), np.array([], dtype=np.int64), np.array([5]), np.array([0, 4, data.n_items])]
    cands = union_top_n(scores, {"a": 6, "b": 4}, histories)
    contexts = [SessionContext(times=np.arange(len(h)) * 60.0, now=1e4, last_type="click") for h in histories]
    expected, got = build_features(cands, histories, table, contexts), build_features(cands, histories, restored, contexts)
    for a, b in zip(expected.flat(), got.flat(), strict=True):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    again = restored.state()
    assert all(again[k].dtype == v.dtype and np.array_equal(again[k], v, equal_nan=True) for k, v in state.items())


def test_a_table_whose_genre_names_do_not_match_is_refused(table: ItemTable) -> None:
    with pytest.raises(ArtifactError, match="genre"):
        ItemTable.from_state(table.state(), ["Comedy", "Drama"])


@pytest.mark.parametrize("copies", [1, 4])  # 13 terms (a loop over them), 52 (by position in the tails)
def test_similarity_rows_add_the_same_float32_terms_in_the_same_order_as_a_loop(copies: int) -> None:
    from streamrec.rank.features import _similarity_rows

    rng = np.random.default_rng(copies)
    sim = sp.random(50, 50, density=0.3, random_state=1, format="csr", dtype=np.float32)
    tails = [rng.choice(np.arange(1, 50), size=n, replace=False) for n in (3, 0, 1, 2, 3, 3, 1) * copies]
    want = np.zeros((len(tails), 50), dtype=np.float32)
    for b, tail in enumerate(tails):
        for item in tail:
            want[b] += sim[item].toarray()[0] / len(tail)
    got = _similarity_rows(sim, tails, len(tails))
    assert got.dtype == np.float32 and got.tobytes() == want.tobytes() and want[0].any() and not want[1].any()
