"""``streamrec bench arrays``: how fast the arrays of a release load, as our ``.npy`` files and as
safetensors (issue 15, point 1: "measure which loads faster").

Protocol:
- The arrays: those of the current release of the registry (``release_of``), read with
  ``read_arrays``: every member whose manifest lists ``arrays`` (the generators) and the ranker's
  ``item_table``. The sequence models are ONNX graphs and hold none.
- Per member, the same arrays are written to a temporary directory twice: our layout
  (``write_arrays``: one ``.npy`` per array, their sha256 in the entries) and one safetensors file
  (``safetensors.numpy.save_file``).
- Per member and way (``WAYS``): one untimed load first (the page cache is then warm, as it is for a
  server that reloads, or the second process of ``--processes 2``), whose arrays must equal the
  release's; then ``repeats`` timed loads, each dropped before the next, and the median.
- A way's ``shared`` column is stated from how it loads, not measured: a read-only mapping of the
  file shares the page cache between the processes of one server; a copy into the process's memory
  does not. safetensors 0.8 maps the file while it reads it, but ``get_tensor`` for numpy returns a
  copy: the mapping is gone once the file is closed and the arrays remain.

A mapped load costs the header parses (and for ``read_arrays`` the sha256 over every byte); the
pages are read later, when scoring touches them. A copying load reads every byte up front.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamrec.errors import ArtifactError, ConfigError

__all__ = ["WAYS", "ArraysBenchConfig", "Way", "Written", "format_arrays", "load_all", "release_arrays",
           "run_arrays_bench", "same_arrays", "time_member", "write_both"]

MB = 1024 * 1024
Arrays = dict[str, np.ndarray]


@dataclass(frozen=True)
class ArraysBenchConfig:
    registry: Path
    repeats: int = 20


@dataclass(frozen=True)
class Written:
    """One member's arrays in both formats."""
    npy_dir: Path  # holds arrays/<name>.npy
    entries: dict[str, dict[str, Any]]  # write_arrays' manifest entries
    safetensors: Path
    npy_bytes: int
    safetensors_bytes: int


@dataclass(frozen=True)
class Way:
    name: str
    label: str
    shared: bool  # shared between processes: stated from the method (module docstring)
    load: Callable[[Written], Arrays]


def _read_arrays(w: Written) -> Arrays:
    from streamrec.export.arrays import read_arrays

    return read_arrays(w.npy_dir, w.entries)


def _npy(w: Written, mmap: bool) -> Arrays:
    return {name: np.load(w.npy_dir / e["file"], mmap_mode="r" if mmap else None, allow_pickle=False)
            for name, e in w.entries.items()}


def _st_load_file(w: Written) -> Arrays:
    from safetensors.numpy import load_file

    return load_file(w.safetensors)


def _st_safe_open(w: Written) -> Arrays:
    from safetensors import safe_open

    with safe_open(w.safetensors, framework="numpy") as f:
        names = f.keys()  # (a safe_open handle is not iterable)
        return {name: f.get_tensor(name) for name in names}


WAYS: tuple[Way, ...] = (
    Way("read_arrays", "ours: read_arrays (mmap + sha256)", True, _read_arrays),
    Way("npy_mmap", "np.load(mmap_mode='r'), no sha256", True, lambda w: _npy(w, mmap=True)),
    Way("npy_load", "np.load into memory", False, lambda w: _npy(w, mmap=False)),
    Way("st_load_file", "safetensors.numpy.load_file", False, _st_load_file),
    Way("st_safe_open", "safetensors safe_open + get_tensor", False, _st_safe_open),
)


def release_arrays(registry: Path) -> tuple[dict[str, str], dict[str, Arrays]]:
    """The current release (name -> version) and the arrays of its members, read with ``read_arrays``:
    member -> array name -> array. A member is a model name, or ``deepfm item_table`` for the ranker's."""
    from streamrec import registry as reg
    from streamrec.export.arrays import ARRAYS, read_arrays
    from streamrec.rank.release import ITEM_TABLE
    from streamrec.retrain.releases import release_of

    release = release_of(registry)
    if not release:
        raise ConfigError(f"no CURRENT {reg.RANKER} under {registry}: no release to read. Run `streamrec "
                          "train-ranker` first, or give --registry")
    members: dict[str, Arrays] = {}
    for name, version in sorted(release.items()):
        directory = reg.version_dir(registry, name, version)
        manifest = reg.read_manifest(directory)
        for key in (ARRAYS, ITEM_TABLE):
            if manifest.get(key):
                members[name if key == ARRAYS else f"{name} {key}"] = read_arrays(directory, manifest[key])
    if not members:
        raise ConfigError(f"the release of {registry} ({release}) holds no arrays: it predates releases made of "
                          "artifacts; publish it again with `streamrec train-ranker`")
    return release, members


def write_both(arrays: Mapping[str, np.ndarray], directory: Path) -> Written:
    """``arrays`` as our ``.npy`` layout under ``directory/npy`` and as ``directory/arrays.safetensors``."""
    from safetensors.numpy import save_file

    from streamrec.export.arrays import write_arrays

    npy_dir = directory / "npy"
    entries = write_arrays(npy_dir, arrays)
    path = directory / "arrays.safetensors"
    save_file({name: np.require(a, requirements="C") for name, a in arrays.items()}, str(path))  # keeps 0-d 0-d
    npy_bytes = sum((npy_dir / e["file"]).stat().st_size for e in entries.values())
    return Written(npy_dir, entries, path, npy_bytes, path.stat().st_size)


def load_all(written: Written) -> dict[str, Arrays]:
    """Way name -> the arrays that way loads (one load each): what the test compares."""
    return {way.name: way.load(written) for way in WAYS}


def same_arrays(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    """The same names, dtypes, shapes and values (NaN equal to NaN)."""
    return a.keys() == b.keys() and all(
        a[n].dtype == b[n].dtype and a[n].shape == b[n].shape
        and np.array_equal(a[n], b[n], equal_nan=a[n].dtype.kind in "fc") for n in a)


def time_member(arrays: Mapping[str, np.ndarray], directory: Path, repeats: int) -> dict[str, Any]:
    """One member: written both ways under ``directory``, then every way timed (the protocol above)."""
    written = write_both(arrays, directory)
    ms: dict[str, float] = {}
    for way in WAYS:
        loaded = way.load(written)  # untimed: warms the page cache
        if not same_arrays(loaded, arrays):
            raise ArtifactError(f"{way.name} loads other arrays than were written to {directory}")
        del loaded
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            loaded = way.load(written)
            times.append(time.perf_counter() - start)
            del loaded  # unmapped or freed before the next load
        ms[way.name] = statistics.median(times) * 1000
    return {"arrays": len(arrays), "bytes": sum(int(a.nbytes) for a in arrays.values()),
            "npy_bytes": written.npy_bytes, "safetensors_bytes": written.safetensors_bytes, "ms": ms}


def run_arrays_bench(config: ArraysBenchConfig, say: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    if config.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, not {config.repeats}")
    try:
        import safetensors
    except ImportError as exc:
        raise ConfigError("safetensors is not installed: `pip install -e '.[dev]'` (it is a dev dependency, "
                          "used by this bench only)") from exc
    release, members = release_arrays(config.registry)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="streamrec-bench-arrays-") as tmp:
        for i, (member, arrays) in enumerate(members.items()):
            say(f"{member}: {len(arrays)} arrays, {sum(a.nbytes for a in arrays.values()) / MB:.1f} MB")
            rows[member] = time_member(arrays, Path(tmp) / str(i), config.repeats)
    totals = {"bytes": sum(r["bytes"] for r in rows.values()),
              "npy_bytes": sum(r["npy_bytes"] for r in rows.values()),
              "safetensors_bytes": sum(r["safetensors_bytes"] for r in rows.values()),
              "ms": {w.name: sum(r["ms"][w.name] for r in rows.values()) for w in WAYS}}
    return {"registry": str(config.registry), "release": release, "repeats": config.repeats,
            "numpy": np.__version__, "safetensors": safetensors.__version__,
            "ways": [{"name": w.name, "label": w.label, "shared": w.shared} for w in WAYS],
            "members": rows, "totals": totals}


def format_arrays(report: Mapping[str, Any]) -> str:
    """The table: one row per member, MB and the median ms of every way, then the totals."""
    names = [w["name"] for w in report["ways"]]
    width = max(len("total"), *(len(m) for m in report["members"]))
    head = f"{'member':<{width}} {'MB':>8} " + " ".join(f"{n:>12}" for n in names)

    def row(member: str, r: Mapping[str, Any]) -> str:
        return f"{member:<{width}} {r['bytes'] / MB:>8.2f} " + " ".join(f"{r['ms'][n]:>12.3f}" for n in names)

    title = (f"median ms per load over {report['repeats']} loads, page cache warm "
             f"(numpy {report['numpy']}, safetensors {report['safetensors']})")
    lines = [title, head, "-" * len(head)]
    lines += [row(m, r) for m, r in report["members"].items()]
    lines += ["-" * len(head), row("total", report["totals"]),
              f"{'shared':<{width}} {'':>8} " + " ".join(f"{'yes' if w['shared'] else 'no':>12}"
                                                         for w in report["ways"]),
              "", "ways (shared between the processes of a server: stated from the method, not measured):"]
    lines += [f"  {w['name']:<13} {w['label']}" for w in report["ways"]]
    t = report["totals"]
    lines.append(f"on disk: .npy {t['npy_bytes'] / MB:.2f} MB, safetensors {t['safetensors_bytes'] / MB:.2f} MB")
    return "\n".join(lines)
