"""Arrays in the registry: one ``.npy`` file per array, each hashed in the manifest, mapped on load.

Why ``.npy`` files mapped read-only rather than loaded: the processes of one server (``--processes
N``), and the replicas on one host, then share the same page-cache pages, so the second process
adds little memory; and a load costs a header parse, not a read of the arrays. ``.npy`` holds raw
numbers after a short header and needs no pickle (``allow_pickle`` is never on: an object array is
refused). ``streamrec bench arrays`` compares the load with safetensors's.

The sha256 is computed over the mapped bytes, and the array is a view of those very bytes: what was
checked is what is used (a registry file is replaced by a rename, never rewritten in place, so a
mapping keeps the bytes it was checked on).
"""

from __future__ import annotations

import hashlib
import mmap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from streamrec import registry as reg
from streamrec.errors import ArtifactError

__all__ = ["ARRAYS", "read_arrays", "write_arrays"]

ARRAYS = "arrays"  # the folder of a version that holds its arrays


def write_arrays(directory: Path, arrays: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Write each array as ``<directory>/arrays/<prefix><name>.npy``; returns the manifest's entries:
    name -> file, sha256, dtype and shape."""
    folder = Path(directory) / ARRAYS
    folder.mkdir(parents=True, exist_ok=True)
    entries: dict[str, dict[str, Any]] = {}
    for name, array in arrays.items():
        array = np.require(array, requirements="C")  # (ascontiguousarray would make a 0-d array 1-d)
        if array.dtype.hasobject:
            raise ArtifactError(f"array {name!r} has dtype {array.dtype}: only numbers go into the registry")
        file = reg.check_name(f"{prefix}{name}.npy", "array")
        np.save(folder / file, array, allow_pickle=False)
        entries[name] = {"file": f"{ARRAYS}/{file}", "sha256": reg.sha256_of(folder / file),
                         "dtype": array.dtype.str, "shape": list(array.shape)}
    return entries


def read_arrays(directory: Path, entries: Mapping[str, Mapping[str, Any]]) -> dict[str, np.ndarray]:
    """The arrays a manifest lists, mapped read-only from ``directory``, each checked against its
    sha256, dtype and shape; ``ArtifactError`` for any mismatch."""
    return {name: _read(Path(directory), name, entry) for name, entry in entries.items()}


def _read(directory: Path, name: str, entry: Mapping[str, Any]) -> np.ndarray:
    file = str(entry.get("file", ""))
    folder, _, base = file.partition("/")
    if folder != ARRAYS:
        raise ArtifactError(f"array {name!r} names the file {file!r}, which is not under {ARRAYS}/")
    path = directory / ARRAYS / reg.check_name(base, "array file")
    try:
        with open(path, "rb") as f:
            data = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot map {path}: {exc}") from exc
    actual = hashlib.sha256(data).hexdigest()
    if actual != entry.get("sha256"):
        raise ArtifactError(f"{path} has sha256 {actual}, but its manifest says {entry.get('sha256')}; the file is "
                            "corrupt or was replaced: publish the model again")
    try:
        version = np.lib.format.read_magic(data)
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = read_header(data)
    except ValueError as exc:
        raise ArtifactError(f"{path} is not a .npy file: {exc}") from exc
    if dtype.hasobject or dtype.str != entry.get("dtype") or list(shape) != list(entry.get("shape", ())):
        raise ArtifactError(f"{path} holds {dtype.str} {list(shape)}, its manifest says "
                            f"{entry.get('dtype')} {entry.get('shape')}")
    return np.ndarray(shape, dtype=dtype, buffer=data, offset=data.tell(), order="F" if fortran else "C")
