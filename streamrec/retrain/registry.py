"""Registry bookkeeping for retraining: statuses, releases, rollback and pruning.

A *release* is a ranker version together with the generator versions its manifest names: servers
follow ``deepfm/CURRENT`` alone and load exactly those versions (``streamrec.serve.loader``). So a
promotion first moves every new version into place (invisible: nothing points at it), then moves
the generators' pointers (for people and tools), and the ranker's pointer last: one atomic rename
switches what every server serves. ``<name>/HISTORY`` keeps one JSON line per pointer move, which
is what rollback walks back through.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from streamrec.errors import ConfigError
from streamrec.files import write_atomic

__all__ = ["RANKER", "VersionRow", "list_versions", "move_in", "promote", "prune", "release_of", "rollback",
           "set_status"]

RANKER: Final = "deepfm"
_SKIP: Final = (".staging",)


@dataclass(frozen=True)
class VersionRow:
    name: str
    version: str
    created_at: str
    status: str  # promoted, rejected, published (by `streamrec train`), or unknown
    current: bool
    metrics: Mapping[str, float]
    reason: str = ""


def _manifest(version_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((version_dir / "manifest.json").read_bytes())
    except (OSError, ValueError):
        return {}


def _pointer(model_dir: Path) -> str | None:
    try:
        return (model_dir / "CURRENT").read_text().strip() or None
    except FileNotFoundError:
        return None


def set_status(version_dir: Path, status: str, reason: str = "", **extra: object) -> None:
    """Record a gate decision in the version's manifest (the sha256 there covers model.onnx only)."""
    manifest = _manifest(version_dir)
    manifest.update({"status": status, "status_reason": reason, "status_at": _now(), **extra})
    write_atomic(version_dir / "manifest.json", json.dumps(manifest, indent=2, default=str) + "\n")


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def list_versions(registry: Path) -> list[VersionRow]:
    """Every version of every model, newest first within a model."""
    rows = []
    for model_dir in sorted(p for p in Path(registry).iterdir() if p.is_dir() and p.name not in _SKIP
                            and not p.name.startswith(".")) if Path(registry).is_dir() else []:
        current = _pointer(model_dir)
        for version_dir in sorted((p for p in model_dir.iterdir() if p.is_dir()), reverse=True):
            m = _manifest(version_dir)
            test = (m.get("metrics") or {}).get("test") or {}
            rows.append(VersionRow(model_dir.name, version_dir.name, str(m.get("created_at", "")),
                                   str(m.get("status", "published" if m else "unknown")), version_dir.name == current,
                                   {k: float(v) for k, v in test.items() if isinstance(v, (int, float))},
                                   str(m.get("status_reason", ""))))
    return rows


def release_of(registry: Path, ranker_version: str | None = None) -> dict[str, str]:
    """Model name -> version of a release (default: the current one); empty when there is none."""
    version = ranker_version or _pointer(Path(registry) / RANKER)
    if version is None:
        return {}
    spec = _manifest(Path(registry) / RANKER / version).get("pipeline") or {}
    return {**{k: str(v) for k, v in (spec.get("generator_versions") or {}).items() if v}, RANKER: version}


def move_in(staged: Path, registry: Path) -> Path:
    """Move a staged version dir (``<staging>/<name>/<version>``) into ``<registry>/<name>/``."""
    target = Path(registry) / staged.parent.name / staged.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        raise ConfigError(f"{target} already exists; refusing to overwrite a published version")
    os.replace(staged, target)
    return target


def _point(registry: Path, name: str, version: str, why: str) -> None:
    model_dir = Path(registry) / name
    if not (model_dir / version / "manifest.json").is_file():
        raise ConfigError(f"{name} has no version {version} under {registry}")
    previous = _pointer(model_dir)
    write_atomic(model_dir / "CURRENT", version + "\n")
    with open(model_dir / "HISTORY", "a") as f:
        f.write(json.dumps({"at": _now(), "version": version, "previous": previous, "why": why}) + "\n")


def promote(registry: Path, release: Mapping[str, str], why: str = "promoted") -> None:
    """Point every model of ``release`` at its version, the ranker last (the one switch servers follow)."""
    for name, version in release.items():
        if name != RANKER:
            _point(registry, name, version, why)
    if RANKER in release:
        _point(registry, RANKER, release[RANKER], why)


def _history(model_dir: Path) -> list[dict[str, Any]]:
    try:
        return [json.loads(line) for line in (model_dir / "HISTORY").read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def rollback(registry: Path, name: str = RANKER) -> dict[str, str]:
    """Point ``name`` back at the version it served before its current one. For the ranker this rolls the
    whole release back (the generators with it). Returns the release now current."""
    model_dir = Path(registry) / name
    current = _pointer(model_dir)
    if current is None:
        raise ConfigError(f"{name} has no CURRENT version under {registry}; nothing to roll back")
    earlier = [h["version"] for h in _history(model_dir) if h.get("version") != current]
    served = [v for v in dict.fromkeys(reversed(earlier)) if (model_dir / v / "manifest.json").is_file()]
    if not served:
        candidates = sorted(p.name for p in model_dir.iterdir() if p.is_dir() and p.name < current
                            and _manifest(p).get("status") != "rejected")
        served = candidates[-1:]
    if not served:
        raise ConfigError(f"{name} has no earlier version to roll back to under {registry}")
    if name == RANKER:
        release = release_of(registry, served[0])
        promote(registry, release, why=f"rollback from {current}")
        return release
    _point(registry, name, served[0], f"rollback from {current}")
    return {name: served[0]}


def prune(registry: Path, keep: int, protect: Sequence[Mapping[str, str]] = ()) -> list[Path]:
    """Delete all but the newest ``keep`` versions of each model, never a current one, nor a generator
    version that a kept ranker version (so a rollback target) or a release in ``protect`` uses.
    Returns what was deleted."""
    if keep < 1:
        raise ConfigError(f"keep must be at least 1, got {keep}")
    ranker_dir = Path(registry) / RANKER
    kept_rankers = sorted((p.name for p in ranker_dir.iterdir() if p.is_dir()), reverse=True)[:keep] \
        if ranker_dir.is_dir() else []
    used: dict[str, set[str]] = {}
    for release in (release_of(registry), *(release_of(registry, v) for v in kept_rankers), *protect):
        for name, version in release.items():
            used.setdefault(name, set()).add(version)
    deleted = []
    for row_name in {r.name for r in list_versions(registry)}:
        model_dir = Path(registry) / row_name
        versions = sorted((p.name for p in model_dir.iterdir() if p.is_dir()), reverse=True)
        current = _pointer(model_dir)
        for version in versions[keep:]:
            if version != current and version not in used.get(row_name, set()):
                shutil.rmtree(model_dir / version)
                deleted.append(model_dir / version)
    return deleted
