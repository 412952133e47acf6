from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from streamrec import registry as reg
from streamrec.errors import ConfigError


def version(root: Path, name: str, v: str, **manifest: object) -> Path:
    """A complete version the way ``publish`` leaves it: staged under a hidden name, then moved in."""
    staged = root / name / f".{v}.tmp"
    staged.mkdir(parents=True)
    (staged / reg.MODEL).write_bytes(b"graph " + v.encode())
    reg.write_manifest(staged, {"version": v, "sha256": reg.sha256_of(staged / reg.MODEL), **manifest})
    return reg.add_version(staged, root, name, v)


def test_the_layout_is_one_dir_per_model_and_version(tmp_path: Path) -> None:
    d = version(tmp_path, "sasrec", "20260101T000000Z")
    assert d == tmp_path / "sasrec" / "20260101T000000Z" == reg.version_dir(tmp_path, "sasrec", "20260101T000000Z")
    version(tmp_path, "sasrec", "20250101T000000Z")
    (tmp_path / "sasrec" / ".20270101T000000Z.half").mkdir()  # a publish in progress
    (tmp_path / reg.STAGING / "run" / "deepfm").mkdir(parents=True)  # retrain's work in progress
    assert reg.model_names(tmp_path) == ["sasrec"]
    assert reg.version_names(tmp_path, "sasrec") == ["20250101T000000Z", "20260101T000000Z"]  # oldest first
    assert reg.model_names(tmp_path / "nothing") == [] and reg.version_names(tmp_path, "gru4rec") == []


def test_staged_versions_get_new_names_and_never_replace_one(tmp_path: Path) -> None:
    first, staging = reg.stage_version(tmp_path, "sasrec")
    assert staging.parent == tmp_path / "sasrec" and staging.name.startswith(f".{first}.")
    assert reg.version_names(tmp_path, "sasrec") == []  # invisible until added
    (staging / reg.MODEL).write_bytes(b"g")
    reg.add_version(staging, tmp_path, "sasrec", first)
    second, again = reg.stage_version(tmp_path, "sasrec")
    assert second != first
    with pytest.raises(ConfigError, match="already exists"):
        reg.add_version(again, tmp_path, "sasrec", first)


def test_every_pointer_move_is_logged_in_the_history(tmp_path: Path) -> None:
    assert reg.read_pointer(tmp_path, "sasrec") is None and reg.read_history(tmp_path, "sasrec") == []
    for v in ("v1", "v2"):
        version(tmp_path, "sasrec", v)
    assert reg.move_pointer(tmp_path, "sasrec", "v1", "published") is None
    assert reg.move_pointer(tmp_path, "sasrec", "v2", "promoted") == "v1"
    assert reg.move_pointer(tmp_path, "sasrec", "v1", "rollback from v2") == "v2"
    assert reg.read_pointer(tmp_path, "sasrec") == "v1" == reg.current_version(tmp_path / "sasrec")
    assert (tmp_path / "sasrec" / reg.POINTER).read_text() == "v1\n"
    history = reg.read_history(tmp_path, "sasrec")
    assert [(h["version"], h["previous"], h["why"]) for h in history] == [
        ("v1", None, "published"), ("v2", "v1", "promoted"), ("v1", "v2", "rollback from v2")]
    assert all(h["at"].endswith("Z") for h in history)
    assert sorted(p.name for p in (tmp_path / "sasrec").iterdir()) == ["CURRENT", "HISTORY", "v1", "v2"]


def test_a_pointer_never_names_a_missing_or_incomplete_version(tmp_path: Path) -> None:
    (tmp_path / "sasrec" / "v1").mkdir(parents=True)  # no manifest: not complete
    for v in ("v1", "v9"):
        with pytest.raises(ConfigError, match=f"no version {v}"):
            reg.move_pointer(tmp_path, "sasrec", v, "promoted")
    assert not (tmp_path / "sasrec" / reg.POINTER).exists() and reg.read_history(tmp_path, "sasrec") == []
    with pytest.raises(reg.ArtifactError, match="no CURRENT"):
        reg.current_version(tmp_path / "sasrec")


def test_the_manifest_round_trips_with_numpy_values_and_paths(tmp_path: Path) -> None:
    manifest = {"version": "v1", "metrics": {"NDCG@10": np.float32(0.25)}, "n": np.int64(3), "from": Path("/x")}
    reg.write_manifest(tmp_path, manifest)
    assert reg.read_manifest(tmp_path) == {"version": "v1", "metrics": {"NDCG@10": 0.25}, "n": 3, "from": "/x"}
    assert (tmp_path / reg.MANIFEST).read_text().endswith("}\n") and not list(tmp_path.glob(".*"))
    with pytest.raises(TypeError, match="set"):
        reg.write_manifest(tmp_path, {"bad": {1, 2}})
    assert reg.read_manifest(tmp_path)["version"] == "v1"  # a failed write leaves the old manifest


@pytest.mark.parametrize(("content", "needle"), [(None, "no manifest.json"), ("{not json", "not valid JSON"),
                                                 ("[1, 2]", "holds a list")])
def test_a_bad_manifest_is_refused(tmp_path: Path, content: str | None, needle: str) -> None:
    if content is not None:
        (tmp_path / reg.MANIFEST).write_text(content)
    with pytest.raises(reg.ArtifactError, match=needle):
        reg.read_manifest(tmp_path)


def test_the_current_manifest_is_none_when_there_is_nothing_to_read(tmp_path: Path) -> None:
    assert reg.current_manifest(tmp_path) is None
    version(tmp_path, reg.RANKER, "d1", dataset="ml-100k")
    reg.move_pointer(tmp_path, reg.RANKER, "d1", "published")
    assert (reg.current_manifest(tmp_path) or {})["dataset"] == "ml-100k"
    (tmp_path / reg.RANKER / reg.POINTER).write_text("../../etc\n")
    assert reg.current_manifest(tmp_path) is None


@pytest.mark.parametrize("name", ["20261126T183000Z", "20261126T183000Z-2", "s1", "v1.2_a"])
def test_valid_names_pass(name: str) -> None:
    assert reg.check_name(name) == name


@pytest.mark.parametrize("name", ["", ".", "..", "../deepfm", "a/b", ".staging", ".v1.tmp", "v 1", "x" * 129,
                                  "v1\n", None, 7])
def test_names_that_could_leave_the_registry_or_hide_are_refused(tmp_path: Path, name: object) -> None:
    with pytest.raises(reg.ArtifactError, match="not valid"):
        reg.check_name(name)
    with pytest.raises(reg.ArtifactError, match="not valid"):
        reg.version_dir(tmp_path, "sasrec", name)  # type: ignore[arg-type]
    with pytest.raises(reg.ArtifactError, match="model name"):
        reg.model_dir(tmp_path, name)  # type: ignore[arg-type]


def test_a_pointer_is_read_as_written_and_refused_when_it_becomes_a_path(tmp_path: Path) -> None:
    """``read_pointer`` reports what the file says; turning it into a path is what refuses a bad one."""
    version(tmp_path, "sasrec", "v1")
    (tmp_path / "sasrec" / reg.POINTER).write_text("../deepfm\n")
    assert reg.read_pointer(tmp_path, "sasrec") == "../deepfm"
    with pytest.raises(reg.ArtifactError, match="not valid"):
        reg.current_version(tmp_path / "sasrec")
    with pytest.raises(reg.ArtifactError, match="not valid"):
        reg.resolve(tmp_path / "sasrec")
    (tmp_path / "sasrec" / reg.POINTER).write_text("\n")
    assert reg.read_pointer(tmp_path, "sasrec") is None


def test_resolve_finds_the_version_from_any_of_its_paths(tmp_path: Path) -> None:
    d = version(tmp_path, "sasrec", "v1")
    reg.move_pointer(tmp_path, "sasrec", "v1", "published")
    assert reg.resolve(d) == reg.resolve(d / reg.MODEL) == reg.resolve(tmp_path / "sasrec") == d
    with pytest.raises(reg.ArtifactError, match="not a model version"):
        reg.resolve(tmp_path)


def test_the_sha256_check_refuses_a_changed_graph(tmp_path: Path) -> None:
    d = version(tmp_path, "sasrec", "v1")
    manifest = reg.read_manifest(d)
    reg.check_sha256(d, manifest)
    (d / reg.MODEL).write_bytes(b"another graph")
    with pytest.raises(reg.ArtifactError, match="sha256"):
        reg.check_sha256(d, manifest)


def test_the_vocab_is_the_file_the_manifest_names(tmp_path: Path) -> None:
    reg.write_vocab(tmp_path, ["<pad>", "a", "b"])
    assert json.loads((tmp_path / reg.VOCAB).read_text()) == ["<pad>", "a", "b"]
    assert reg.read_vocab(tmp_path, {"vocab": reg.VOCAB}) == reg.read_vocab(tmp_path, {}) == ["<pad>", "a", "b"]
    assert reg.read_vocab(tmp_path, {"vocab": None}) is None  # a ranker published without one
    with pytest.raises(reg.ArtifactError, match="vocab file"):
        reg.read_vocab(tmp_path, {"vocab": "../secrets.json"})


def test_the_model_names_are_the_serving_ones() -> None:
    assert reg.RANKER == "deepfm" and reg.RANKER not in reg.SEQUENCE_MODELS
    assert reg.SEQUENCE_MODELS == ("sasrec", "gru4rec", "bert4rec", "neumf", "autorec", "srgnn", "lightgcn")


_MOVER = """
import sys, time
from pathlib import Path
from streamrec import registry as reg
from streamrec.files import write_atomic

root, at, marker = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])

def seam(where, temp):
    if where == at:
        write_atomic(marker, where)
        time.sleep(600)  # waiting for the SIGKILL

reg.move_pointer(root, "sasrec", "v2", "promoted", seam=seam)
"""


@pytest.mark.parametrize(("seam", "moved"), [("synced", False), ("pointer", False), ("pointed", True),
                                             ("history", True), ("logged", True)])
def test_a_move_killed_at_any_step_leaves_the_old_state_or_the_new_never_a_torn_one(
        tmp_path: Path, seam: str, moved: bool) -> None:
    """A mover SIGKILLed at each step of ``move_pointer`` (the version fsync'd; each file's temp written
    and fsync'd, before its rename; after it): the pointer and the history read as before the move or
    after it, together; every HISTORY line is whole; and the next move logs on from there."""
    version(tmp_path, "sasrec", "v1")
    version(tmp_path, "sasrec", "v2")
    reg.move_pointer(tmp_path, "sasrec", "v1", "published")
    marker = tmp_path / "paused"
    proc = subprocess.Popen([sys.executable, "-c", _MOVER, str(tmp_path), seam, str(marker)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, f"the mover exited early: {proc.communicate()[0].decode()}"
            assert time.monotonic() < deadline, "the mover never reached the seam"
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    old, new = [("v1", None)], [("v1", None), ("v2", "v1")]
    assert reg.read_pointer(tmp_path, "sasrec") == ("v2" if moved else "v1")
    assert [(h["version"], h["previous"]) for h in reg.read_history(tmp_path, "sasrec")] == (new if moved else old)
    text = (tmp_path / "sasrec" / reg.HISTORY).read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())

    reg.move_pointer(tmp_path, "sasrec", "v1", "rollback from v2")
    after = [(h["version"], h["previous"]) for h in reg.read_history(tmp_path, "sasrec")]
    assert after == ([*new, ("v1", "v2")] if moved else [*old, ("v1", "v1")])
    assert reg.read_history(tmp_path, "sasrec") == [json.loads(line) for line in
                                                    (tmp_path / "sasrec" / reg.HISTORY).read_text().splitlines()]


def test_the_version_is_made_durable_before_the_pointer_names_it(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    version(tmp_path, "sasrec", "v1")
    synced: list[Path] = []
    monkeypatch.setattr(reg, "fsync_tree", lambda path: synced.append(path))
    steps: list[str] = []
    reg.move_pointer(tmp_path, "sasrec", "v1", "published", seam=lambda where, temp: steps.append(where))
    assert synced == [tmp_path / "sasrec" / "v1"]
    assert steps == ["synced", "pointer", "pointed", "history", "logged"]
