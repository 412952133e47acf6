"""The on-disk model registry: its layout, the pointers and their history, manifests, and model names.

Whatever publishes (``streamrec.export``), promotes or rolls back (``streamrec.retrain``) or loads
(``streamrec.serve``) goes through this module; none of them joins these paths itself. Its location
is ``Settings.registry`` (``STREAMREC_REGISTRY``, default ``./models``), passed down explicitly. Layout::

    <registry>/<name>/<version>/model.onnx      the exported graph (sequence models and the ranker)
    <registry>/<name>/<version>/arrays/*.npy    a generator's fitted arrays; a ranker's item table
    <registry>/<name>/<version>/manifest.json   what the version is (written by streamrec.export), with the
                                                sha256 of model.onnx and of each array
    <registry>/<name>/<version>/vocab.json      item_id per item index (generators record its digest)
    <registry>/<name>/CURRENT                   the version in use: one line, replaced atomically
    <registry>/<name>/HISTORY                   one JSON line per move of CURRENT: at, version, previous, why
    <registry>/.staging/                        retrain's work in progress; a hidden name is never a model

Readers on other processes stay safe through two rules: a version directory is complete before it
appears under its name (filled under a hidden name, then renamed: ``stage_version`` then
``add_version``), and ``CURRENT`` only ever names a version that has a manifest (``move_pointer``).

Model and version names are single path components (letters, digits, ``.``, ``_``, ``-``, not
starting with a dot): a pointer or a manifest names versions, and such a name must never reach
outside the registry. ``read_pointer`` returns the pointer's text as it is; ``version_dir``, which
every path to a version goes through, refuses a bad name and any path that resolves outside the
registry, so a bad pointer is one more refused version.

Durability: a version's files and directories are fsync'd before a pointer names it; ``CURRENT``
and ``HISTORY`` are each replaced whole (``write_atomic``), the pointer first. A crash between the
two leaves a move that ``HISTORY`` does not show yet; ``read_history`` adds it back (and the next
move writes it down), so the registry reads as before the move or after it, never between.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, Literal, get_args

from streamrec.errors import ArtifactError, ConfigError
from streamrec.files import fsync_tree, write_atomic

__all__ = [
    "HISTORY", "MANIFEST", "MODEL", "POINTER", "RANKER", "RANKER_ARCHS", "SEQUENCE_MODELS", "STAGING", "VOCAB",
    "RankerArch", "add_version", "check_name", "check_sha256", "current_manifest", "current_version",
    "model_dir", "model_names", "move_pointer", "read_history", "read_manifest", "read_model", "read_pointer",
    "read_vocab", "resolve", "sha256_of", "stage_version", "version_dir", "version_names", "write_manifest", "write_vocab",
]

RANKER: Final = "deepfm"  # the ranker; servers follow its pointer alone, and its manifest names the rest
#: The ranker's network (``streamrec.offline.ranker_fit``), recorded as its manifest's ``architecture``
#: (absent: ``"deepfm"``, the only one before). Whatever it is, the ranker is published under ``RANKER``.
RankerArch = Literal["deepfm", "widedeep", "dcnv2", "dlrm"]
RANKER_ARCHS: Final[tuple[str, ...]] = get_args(RankerArch)
#: Published as ONNX with the sequence contract; the other generators as arrays.
SEQUENCE_MODELS: Final = ("sasrec", "gru4rec", "bert4rec", "neumf", "autorec", "srgnn", "lightgcn")

MODEL: Final = "model.onnx"
MANIFEST: Final = "manifest.json"
VOCAB: Final = "vocab.json"
POINTER: Final = "CURRENT"
HISTORY: Final = "HISTORY"
STAGING: Final = ".staging"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_name(value: object, what: str = "version") -> str:
    """``value`` when it is a valid model or version name (one path component); ``ArtifactError`` otherwise."""
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ArtifactError(f"{what} name {value!r} is not valid: a registry name is 1 to 128 letters, digits, "
                            "'.', '_' or '-', not starting with '.'")
    return value


def _inside(registry: Path, path: Path) -> Path:
    """``path`` when it resolves inside ``registry`` (a symlinked model or version may not lead out of it)."""
    if not path.resolve().is_relative_to(Path(registry).resolve()):
        raise ArtifactError(f"{path} resolves to {path.resolve()}, outside the registry {registry}; refusing it")
    return path


def model_dir(registry: Path, name: str) -> Path:
    return _inside(registry, Path(registry) / check_name(name, "model"))


def version_dir(registry: Path, name: str, version: str) -> Path:
    return _inside(registry, model_dir(registry, name) / check_name(version))


def model_names(registry: Path) -> list[str]:
    """Every model directory of ``registry`` (hidden ones, such as the staging area, are not models)."""
    root = Path(registry)
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir() and _NAME.fullmatch(p.name))


def version_names(registry: Path, name: str) -> list[str]:
    """The versions of ``name``, oldest first (timestamped names sort by time); half-published ones are hidden."""
    directory = model_dir(registry, name)
    if not directory.is_dir():
        return []
    return sorted(p.name for p in directory.iterdir() if p.is_dir() and _NAME.fullmatch(p.name))


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def stage_version(registry: Path, name: str) -> tuple[str, Path]:
    """A new version name for ``name`` (a UTC timestamp) and a hidden directory beside it to fill;
    ``add_version`` then makes it visible under that name."""
    directory = model_dir(registry, name)
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    version, n = stamp, 1
    while (directory / version).exists():
        n += 1
        version = f"{stamp}-{n}"
    return version, Path(tempfile.mkdtemp(dir=directory, prefix=f".{version}."))


def add_version(staged: Path, registry: Path, name: str, version: str) -> Path:
    """Move a complete version directory in as ``<registry>/<name>/<version>`` (one rename); never over another."""
    target = version_dir(registry, name, version)
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise ConfigError(f"{target} already exists; refusing to overwrite a published version")
    os.replace(staged, target)
    return target


def _pointer(directory: Path) -> str | None:
    try:
        return (directory / POINTER).read_text().strip() or None
    except FileNotFoundError:
        return None


def read_pointer(registry: Path, name: str = RANKER) -> str | None:
    """The text of ``<registry>/<name>/CURRENT``, or None when there is none (not checked: see the module doc)."""
    return _pointer(model_dir(registry, name))


def current_version(directory: Path) -> str:
    """The version a model directory's ``CURRENT`` names; ``ArtifactError`` when there is none or it is bad."""
    version = _pointer(Path(directory))
    if version is None:
        raise ArtifactError(f"{directory} has no {POINTER} pointer; publish a model there first")
    return check_name(version)


def _no_seam(where: str, temp: Path | None) -> None:
    """``move_pointer``'s crash seam: called at each step, with the temp file about to be renamed, if any."""


def move_pointer(registry: Path, name: str, version: str, why: str,
                 seam: Callable[[str, Path | None], None] = _no_seam) -> str | None:
    """Point ``name``'s ``CURRENT`` at ``version`` and log the move in ``HISTORY``; returns the previous version.

    Every move goes through here (a publish, a promotion, a rollback), so ``HISTORY`` is complete and
    rollback can walk back through it. The version is made durable first; see the module doc for
    the order of the two writes. ``seam`` is for crash tests."""
    target = version_dir(registry, name, version)
    if not (target / MANIFEST).is_file():
        raise ConfigError(f"{name} has no version {version} under {registry}")
    directory = target.parent
    previous = read_pointer(registry, name)
    logged = _history_text(directory)
    fsync_tree(target)  # its files and its name, before anything names it
    seam("synced", None)
    write_atomic(directory / POINTER, version + "\n", before_replace=lambda tmp: seam("pointer", tmp))
    seam("pointed", None)
    lines = [json.loads(line) for line in logged.splitlines() if line.strip()]
    unlogged = _unlogged_move(lines, previous)  # a move a crash kept out of HISTORY
    line = {"at": _now(), "version": version, "previous": previous, "why": why}
    text = logged + "".join(json.dumps(entry) + "\n" for entry in (*unlogged, line))
    write_atomic(directory / HISTORY, text, before_replace=lambda tmp: seam("history", tmp))
    seam("logged", None)
    return previous


def _history_text(directory: Path) -> str:
    try:
        text = (directory / HISTORY).read_text()
    except FileNotFoundError:
        return ""
    return text[: text.rfind("\n") + 1]  # a line of an older writer cut by a crash is not a line


def _unlogged_move(history: Sequence[Mapping[str, Any]], pointer: str | None) -> list[dict[str, Any]]:
    """The move to ``pointer`` when ``HISTORY`` does not end with it (the pointer moved, then the process
    died before ``HISTORY`` was replaced); empty otherwise, or when the pointer is not a valid name."""
    last = history[-1].get("version") if history else None
    if pointer is None or pointer == last or not _NAME.fullmatch(pointer):
        return []
    return [{"at": None, "version": pointer, "previous": last, "why": "not logged (found after a crash)"}]


def read_history(registry: Path, name: str) -> list[dict[str, Any]]:
    """The pointer moves of ``name``, oldest first, ending with the move to the current version."""
    directory = model_dir(registry, name)
    history = [json.loads(line) for line in _history_text(directory).splitlines() if line.strip()]
    return history + _unlogged_move(history, _pointer(directory))


def read_manifest(directory: Path) -> dict[str, Any]:
    """A version's manifest; ``ArtifactError`` when it is missing or not a JSON object."""
    path = Path(directory) / MANIFEST
    try:
        manifest = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ArtifactError(f"{directory} is not a model version: it has no {MANIFEST}") from None
    except ValueError as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); publish the model again") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} holds a {type(manifest).__name__}, not a manifest; publish the model again")
    return manifest


def write_manifest(directory: Path, manifest: Mapping[str, object]) -> None:
    """Write (or replace) a version's manifest atomically. Its sha256 covers model.onnx, not itself, so
    later notes (a gate's decision) may be added."""
    write_atomic(Path(directory) / MANIFEST, json.dumps(dict(manifest), indent=2, default=_jsonable) + "\n")


def _jsonable(value: object) -> object:
    item = getattr(value, "item", None)  # a numpy scalar; numpy is not imported for this alone
    if callable(item) and getattr(value, "shape", None) == ():
        return item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def current_manifest(registry: Path, name: str = RANKER) -> dict[str, Any] | None:
    """The manifest of ``name``'s current version, or None when there is none or it cannot be read
    (for defaults shown to people, such as the served dataset; loaders check properly)."""
    try:
        return read_manifest(version_dir(registry, name, str(read_pointer(registry, name))))
    except (ArtifactError, OSError):
        return None


def write_vocab(directory: Path, vocab: Sequence[str]) -> None:
    write_atomic(Path(directory) / VOCAB, json.dumps(list(vocab)) + "\n")


def read_vocab(directory: Path, manifest: Mapping[str, Any]) -> list[str] | None:
    """The vocabulary the manifest names (``vocab``: a file name, or null for none), else ``vocab.json``."""
    name = manifest.get("vocab", VOCAB)
    if not name:
        return None
    return list(json.loads((Path(directory) / check_name(name, "vocab file")).read_bytes()))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(directory: Path, manifest: Mapping[str, Any]) -> None:
    """``ArtifactError`` unless the version's model.onnx has the sha256 its manifest records."""
    read_model(directory, manifest)


def read_model(directory: Path, manifest: Mapping[str, Any]) -> bytes:
    """The bytes of the version's model.onnx, read once and checked against the sha256 its manifest
    records: load these bytes, never the path again (the file may be replaced in between)."""
    path = Path(directory) / MODEL
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ArtifactError(f"{directory} has no {MODEL}; publish the model again") from None
    actual = hashlib.sha256(data).hexdigest()
    if actual != manifest.get("sha256"):
        raise ArtifactError(f"{path} has sha256 {actual}, but its manifest says {manifest.get('sha256')}; "
                            "the file is corrupt or was replaced: publish the model again")
    return data


def resolve(path: Path) -> Path:
    """A version directory from: a version dir, its ``model.onnx``, or a model dir (via ``CURRENT``).
    What the version must hold besides its manifest is its loader's to check."""
    path = Path(path)
    if path.is_file() and path.name == MODEL:
        path = path.parent
    if not (path / MANIFEST).is_file() and (path / POINTER).is_file():
        path = _inside(path, path / current_version(path))
    if not (path / MANIFEST).is_file():
        raise ArtifactError(f"{path} is not a model version (no {MANIFEST} there)")
    return path
