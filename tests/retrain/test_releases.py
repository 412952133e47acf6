import json
from pathlib import Path

import pytest

from streamrec.errors import ConfigError
from streamrec.retrain.commands import parse_every
from streamrec.retrain.releases import list_versions, move_in, promote, prune, release_of, rollback, set_status


def version(root: Path, name: str, v: str, **manifest: object) -> Path:
    d = root / name / v
    d.mkdir(parents=True)
    (d / "manifest.json").write_text(json.dumps({"created_at": v, "metrics": {"test": {"NDCG@10": 0.1}}, **manifest}))
    return d


def release(root: Path, v: str) -> dict[str, str]:
    version(root, "sasrec", f"s{v}")
    version(root, "deepfm", f"d{v}", pipeline={"generator_versions": {"sasrec": f"s{v}"}})
    return {"sasrec": f"s{v}", "deepfm": f"d{v}"}


def current(root: Path, name: str) -> str:
    return (root / name / "CURRENT").read_text().strip()


def test_promotion_points_every_model_and_the_ranker_names_the_release(tmp_path: Path) -> None:
    promote(tmp_path, release(tmp_path, "1"))
    assert current(tmp_path, "sasrec") == "s1" and current(tmp_path, "deepfm") == "d1"
    assert release_of(tmp_path) == {"sasrec": "s1", "deepfm": "d1"}


def test_rollback_restores_the_previous_release_and_skips_rejected_ones(tmp_path: Path) -> None:
    promote(tmp_path, release(tmp_path, "1"))
    promote(tmp_path, release(tmp_path, "2"))
    release(tmp_path, "3")  # staged and rejected: never pointed at
    assert rollback(tmp_path) == {"sasrec": "s1", "deepfm": "d1"}
    assert current(tmp_path, "sasrec") == "s1"
    assert rollback(tmp_path) == {"sasrec": "s2", "deepfm": "d2"}  # rolling back a rollback goes forward again


def test_rollback_without_history_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no CURRENT"):
        rollback(tmp_path)


def test_prune_keeps_the_newest_the_current_and_what_kept_rankers_use(tmp_path: Path) -> None:
    for v in "1234":
        promote(tmp_path, release(tmp_path, v))
    promote(tmp_path, release_of(tmp_path, "d1"))  # a rollback to the oldest release
    deleted = {p.name for p in prune(tmp_path, keep=2)}
    assert deleted == {"s2", "d2"}  # 3 and 4 are the newest two; 1 is current
    assert {r.version for r in list_versions(tmp_path)} == {"s1", "s3", "s4", "d1", "d3", "d4"}


def test_status_lands_in_the_manifest_and_the_listing(tmp_path: Path) -> None:
    d = version(tmp_path, "sasrec", "s1")
    set_status(d, "rejected", "NDCG@10 too low")
    (row,) = list_versions(tmp_path)
    assert (row.status, row.reason, row.current) == ("rejected", "NDCG@10 too low", False)


def test_move_in_refuses_to_overwrite(tmp_path: Path) -> None:
    staged = version(tmp_path / "staging", "sasrec", "s1")
    move_in(staged, tmp_path / "reg")
    again = version(tmp_path / "staging", "sasrec", "s1")
    with pytest.raises(ConfigError, match="already exists"):
        move_in(again, tmp_path / "reg")


@pytest.mark.parametrize(("text", "seconds"), [("6h", 21600), ("30m", 1800), ("1.5d", 129600), (" 10 s ", 10)])
def test_periods_parse(text: str, seconds: float) -> None:
    assert parse_every(text) == seconds


def test_a_bad_period_is_refused() -> None:
    with pytest.raises(ConfigError, match="6h"):
        parse_every("often")


def test_rejected_rounds_do_not_count_toward_keep_and_never_delete_the_rollback_target(tmp_path: Path) -> None:
    promote(tmp_path, release(tmp_path, "1"))
    promote(tmp_path, release(tmp_path, "2"))  # current; release 1 is the rollback target
    for v in "34567":  # five rejected rounds
        for name, version in release(tmp_path, v).items():
            set_status(tmp_path / name / version, "rejected", "NDCG@10 too low")
    deleted = {p.name for p in prune(tmp_path, keep=2)}
    assert deleted == {"s3", "d3", "s4", "d4", "s5", "d5"}  # rejected beyond the newest two versions
    assert {r.version for r in list_versions(tmp_path)} == {"s1", "s2", "s6", "s7", "d1", "d2", "d6", "d7"}
    assert rollback(tmp_path) == {"sasrec": "s1", "deepfm": "d1"}


def test_generator_artifacts_are_members_like_any_other(tmp_path: Path) -> None:
    """A release names its generators' array versions too: promotion points them, a rollback brings back
    the neighbour tables with the networks, and pruning keeps what a kept ranker uses."""
    def full(v: str) -> dict[str, str]:
        version(tmp_path, "itemknn", f"i{v}", kind="generator")
        version(tmp_path, "sasrec", f"s{v}")
        version(tmp_path, "deepfm", f"d{v}", pipeline={"generator_versions": {"sasrec": f"s{v}", "itemknn": f"i{v}"}})
        return {"sasrec": f"s{v}", "itemknn": f"i{v}", "deepfm": f"d{v}"}

    for v in "123":
        promote(tmp_path, full(v))
    assert current(tmp_path, "itemknn") == "i3"
    assert rollback(tmp_path) == {"sasrec": "s2", "itemknn": "i2", "deepfm": "d2"}
    assert current(tmp_path, "itemknn") == "i2"
    deleted = {p.name for p in prune(tmp_path, keep=1)}
    assert deleted == {"s1", "i1", "d1"}  # 3 is the newest, 2 is current
