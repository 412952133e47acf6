"""A fitted model as a flat dict of numeric numpy arrays, and back: the one encoding of sparse matrices
and scalars that every ``state()`` / ``from_state()`` uses.

A state holds plain arrays only (no object dtype, no pickle), so any array format (``.npy``,
safetensors) can store it and load it memory-mapped. Loading must therefore neither copy a big
array nor write into one: scipy's ``csr_matrix((data, indices, indptr))`` keeps the arrays it is
given when their index dtype is the one it would pick itself (``csr_to_arrays`` sees to that), and
the models only read them (tested with read-only and memory-mapped arrays).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from streamrec.errors import ArtifactError

__all__ = ["State", "check_rows", "csr_from_arrays", "csr_to_arrays", "int_array", "int_from", "require"]

State = dict[str, np.ndarray]
"""What ``state()`` returns: array name -> plain numeric array."""

_CSR_PARTS = ("indptr", "indices", "data", "shape")


def csr_to_arrays(prefix: str, m: sp.csr_matrix | sp.sparray) -> State:
    """``<prefix>.indptr``, ``.indices``, ``.data`` and ``.shape`` (int64, 2 values).

    The index arrays get the dtype scipy picks for their contents (int32 unless a value or the shape
    needs int64), which is what ``csr_from_arrays``' constructor would pick: exported otherwise, it
    would copy them at every load. Nothing is copied for a matrix scipy built (``fit``'s).
    """
    m = sp.csr_matrix(m)  # no copy for a CSR matrix; a CSR array or another format is converted
    m = sp.csr_matrix((m.data, m.indices, m.indptr), shape=m.shape, copy=False)
    return {f"{prefix}.indptr": m.indptr, f"{prefix}.indices": m.indices, f"{prefix}.data": m.data,
            f"{prefix}.shape": np.asarray(m.shape, dtype=np.int64)}


def csr_from_arrays(prefix: str, arrays: Mapping[str, np.ndarray]) -> sp.csr_matrix:
    """The matrix ``csr_to_arrays(prefix, ·)`` wrote, built on the given arrays without copying them."""
    require(arrays, [f"{prefix}.{p}" for p in _CSR_PARTS], prefix)
    shape = np.asarray(arrays[f"{prefix}.shape"]).reshape(-1)
    if len(shape) != 2:
        raise ArtifactError(f"{prefix}.shape must hold 2 values, it holds {len(shape)}")
    n_rows, n_cols = int(shape[0]), int(shape[1])
    indptr, indices = arrays[f"{prefix}.indptr"], arrays[f"{prefix}.indices"]
    if len(indptr) != n_rows + 1 or len(indices) != len(arrays[f"{prefix}.data"]) or len(indices) != indptr[-1]:
        raise ArtifactError(f"{prefix}: indptr, indices and data do not describe a {n_rows}x{n_cols} CSR matrix")
    return sp.csr_matrix((arrays[f"{prefix}.data"], indices, indptr), shape=(n_rows, n_cols), copy=False)


def int_array(value: int) -> np.ndarray:
    """A scalar as an int64 array of one value: every array format stores that shape."""
    return np.asarray([value], dtype=np.int64)


def int_from(arrays: Mapping[str, np.ndarray], name: str) -> int:
    """The scalar ``int_array`` stored under ``name`` (a 0-d array is accepted too)."""
    require(arrays, [name], name)
    flat = np.asarray(arrays[name]).reshape(-1)
    if flat.size != 1 or flat.dtype.kind not in "iu":
        raise ArtifactError(f"{name} must be one integer, got {flat.size} values of {flat.dtype}")
    return int(flat[0])


def require(arrays: Mapping[str, np.ndarray], names: list[str] | tuple[str, ...], owner: str) -> None:
    """Raise ``ArtifactError`` naming the arrays of ``names`` that ``arrays`` lacks."""
    missing = [n for n in names if n not in arrays]
    if missing:
        raise ArtifactError(f"the state of {owner} lacks {', '.join(missing)}; re-export it")


def check_rows(owner: str, n_rows: int, arrays: Mapping[str, np.ndarray | sp.spmatrix]) -> None:
    """Raise ``ArtifactError`` unless each of ``arrays`` has ``n_rows`` rows (one per item, padding included):
    arrays of another catalogue would otherwise fail later, in the middle of scoring."""
    wrong = [f"{name} {a.shape}" for name, a in arrays.items() if a.shape[0] != n_rows]
    if wrong:
        raise ArtifactError(f"the state of {owner} is inconsistent: {', '.join(wrong)} where {n_rows} rows were "
                            "expected; re-export it")
