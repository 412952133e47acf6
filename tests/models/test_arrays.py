from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from streamrec.errors import ArtifactError
from streamrec.models.arrays import csr_from_arrays, csr_to_arrays, int_array, int_from
from tests.models.helpers import frozen


@pytest.mark.parametrize(("n_cols", "index_dtype"), [(40, np.int32), (40, np.int64), (2**31 + 5, np.int64)])
def test_csr_round_trip_keeps_the_arrays_and_never_writes_them(n_cols: int, index_dtype: type) -> None:
    m = sp.random(50, 40, density=0.1, format="csr", random_state=0, dtype=np.float32)
    m = sp.csr_matrix((m.data, m.indices.astype(index_dtype), m.indptr.astype(index_dtype)), shape=(50, n_cols))
    arrays = frozen(csr_to_arrays("sim", m))
    assert sorted(arrays) == ["sim.data", "sim.indices", "sim.indptr", "sim.shape"]
    # int32 indices unless the shape needs int64: the dtype scipy's constructor picks, so loading copies nothing
    assert arrays["sim.indices"].dtype == arrays["sim.indptr"].dtype == (np.int32 if n_cols < 2**31 else np.int64)
    back = csr_from_arrays("sim", arrays)
    for part in ("data", "indices", "indptr"):
        assert np.shares_memory(getattr(back, part), arrays[f"sim.{part}"]), f"{part} was copied"
    assert back.shape == m.shape and (back != m).nnz == 0
    if n_cols < 2**31:
        dense = np.random.default_rng(0).random((3, 50))
        assert np.array_equal(dense @ back, dense @ m) and np.array_equal((back @ back.T).toarray(), (m @ m.T).toarray())
        assert np.array_equal(back.getrow(7).toarray(), m.getrow(7).toarray())  # what the server's similar_items reads


def test_scalars_and_bad_arrays() -> None:
    assert int_from({"n": int_array(7)}, "n") == 7 and int_from({"n": np.asarray(7)}, "n") == 7
    with pytest.raises(ArtifactError, match="one integer"):
        int_from({"n": np.zeros(2, dtype=np.int64)}, "n")
    arrays = csr_to_arrays("m", sp.eye(4, format="csr"))
    with pytest.raises(ArtifactError, match="lacks m.indices"):
        csr_from_arrays("m", {k: v for k, v in arrays.items() if k != "m.indices"})
    with pytest.raises(ArtifactError, match="4x5"):
        csr_from_arrays("m", {**arrays, "m.shape": np.array([4, 5], dtype=np.int64), "m.indptr": arrays["m.indptr"][:-1]})
