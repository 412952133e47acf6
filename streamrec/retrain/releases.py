"""Registry bookkeeping for retraining: statuses, releases, rollback and pruning.

A *release* is a ranker version together with the generator versions its manifest names: servers
follow ``deepfm/CURRENT`` alone and load exactly those versions (``streamrec.serve.loader``). So a
promotion first moves every new version into place (invisible: nothing points at it), then moves
the generators' pointers (for people and tools), and the ranker's pointer last: one atomic rename
switches what every server serves. Rollback walks back through ``HISTORY``, the log of pointer
moves that ``streamrec.registry`` keeps for every publish, promotion and rollback.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from streamrec import registry as reg
from streamrec.errors import ArtifactError, ConfigError

__all__ = ["VersionRow", "list_versions", "move_in", "promote", "prune", "release_of", "rollback", "served_contract",
           "set_status"]


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
    """The manifest, or an empty one for a version whose manifest is missing or unreadable (listed as unknown)."""
    try:
        return reg.read_manifest(version_dir)
    except ArtifactError:
        return {}


def set_status(version_dir: Path, status: str, reason: str = "", **extra: object) -> None:
    """Record a gate decision in the version's manifest (its sha256s cover the files, not the manifest)."""
    manifest = _manifest(version_dir)
    manifest.update({"status": status, "status_reason": reason,
                     "status_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **extra})
    reg.write_manifest(version_dir, manifest)


def list_versions(registry: Path) -> list[VersionRow]:
    """Every version of every model, newest first within a model."""
    rows = []
    for name in reg.model_names(registry):
        current = reg.read_pointer(registry, name)
        for version in reversed(reg.version_names(registry, name)):
            m = _manifest(reg.version_dir(registry, name, version))
            test = (m.get("metrics") or {}).get("test") or {}
            rows.append(VersionRow(name, version, str(m.get("created_at", "")),
                                   str(m.get("status", "published" if m else "unknown")), version == current,
                                   {k: float(v) for k, v in test.items() if isinstance(v, (int, float))},
                                   str(m.get("status_reason", ""))))
    return rows


def release_of(registry: Path, ranker_version: str | None = None) -> dict[str, str]:
    """Model name -> version of a release (default: the current one); empty when there is none."""
    version = ranker_version or reg.read_pointer(registry, reg.RANKER)
    if version is None:
        return {}
    spec = _manifest(reg.version_dir(registry, reg.RANKER, version)).get("pipeline") or {}
    return {**{k: str(v) for k, v in (spec.get("generator_versions") or {}).items() if v}, reg.RANKER: version}


def served_contract(registry: Path, release: Mapping[str, str], models: Sequence[str]) -> Literal["scores", "session"]:
    """``"session"`` when one of ``models`` is served at a version published with the session contract
    (``streamrec train --contract session``), else ``"scores"``: a retrain publishes its sequence models
    as the release it replaces did, so that a catalogue served through item indexes stays so."""
    for name in models:
        if name in release and _manifest(reg.version_dir(registry, name, release[name])).get("contract") == "session":
            return "session"
    return "scores"


def move_in(staged: Path, registry: Path) -> Path:
    """Move a staged version dir (``<staging>/<name>/<version>``) into ``<registry>/<name>/``."""
    return reg.add_version(staged, registry, staged.parent.name, staged.name)


def promote(registry: Path, release: Mapping[str, str], why: str = "promoted") -> None:
    """Point every model of ``release`` at its version, the ranker last (the one switch servers follow)."""
    for name, version in release.items():
        if name != reg.RANKER:
            reg.move_pointer(registry, name, version, why)
    if reg.RANKER in release:
        reg.move_pointer(registry, reg.RANKER, release[reg.RANKER], why)


def rollback(registry: Path, name: str = reg.RANKER) -> dict[str, str]:
    """Point ``name`` back at the version it served before its current one. For the ranker this rolls the
    whole release back (the generators with it). Returns the release now current."""
    current = reg.read_pointer(registry, name)
    if current is None:
        raise ConfigError(f"{name} has no CURRENT version under {registry}; nothing to roll back")
    earlier = [h["version"] for h in reg.read_history(registry, name) if h.get("version") != current]
    served = [v for v in dict.fromkeys(reversed(earlier))
              if (reg.version_dir(registry, name, v) / reg.MANIFEST).is_file()]
    if not served:
        served = [v for v in reg.version_names(registry, name) if v < current
                  and _manifest(reg.version_dir(registry, name, v)).get("status") != "rejected"][-1:]
    if not served:
        raise ConfigError(f"{name} has no earlier version to roll back to under {registry}")
    if name == reg.RANKER:
        release = release_of(registry, served[0])
        promote(registry, release, why=f"rollback from {current}")
        return release
    reg.move_pointer(registry, name, served[0], f"rollback from {current}")
    return {name: served[0]}


def _kept(registry: Path, name: str, keep: int) -> list[str]:
    """The versions of ``name`` that ``keep`` keeps: the newest ``keep`` that were not rejected (the
    rollback targets; rejected rounds never push one out), and rejected ones among the newest ``keep``
    versions of all (kept a while for inspection)."""
    newest = list(reversed(reg.version_names(registry, name)))
    rejected = {v for v in newest if _manifest(reg.version_dir(registry, name, v)).get("status") == "rejected"}
    return [v for v in newest if v not in rejected][:keep] + [v for v in newest[:keep] if v in rejected]


def prune(registry: Path, keep: int, protect: Sequence[Mapping[str, str]] = ()) -> list[Path]:
    """Delete the versions ``_kept`` does not keep, never a current one, nor a generator version that a
    kept ranker version (so a rollback target) or a release in ``protect`` uses; nothing at all while the
    ranker's ``CURRENT`` is not a valid version name. Returns what was deleted."""
    if keep < 1:
        raise ConfigError(f"keep must be at least 1, got {keep}")
    try:
        serving = release_of(registry)
    except ArtifactError:  # CURRENT names no valid version: what it should protect is unknown
        return []
    kept = {name: set(_kept(registry, name, keep)) for name in reg.model_names(registry)}
    used: dict[str, set[str]] = {}
    for release in (serving, *(release_of(registry, v) for v in kept.get(reg.RANKER, ())), *protect):
        for name, version in release.items():
            used.setdefault(name, set()).add(version)
    deleted = []
    for name in reg.model_names(registry):
        current = reg.read_pointer(registry, name)
        for version in reversed(reg.version_names(registry, name)):
            if version not in kept[name] and version != current and version not in used.get(name, set()):
                target = reg.version_dir(registry, name, version)
                shutil.rmtree(target)
                deleted.append(target)
    return deleted
