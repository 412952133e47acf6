from __future__ import annotations

from datetime import date

import pytest

from streamrec.archive.dedup import SeenIds
from streamrec.errors import ConfigError

D1, D2, D3 = date(2024, 1, 1), date(2024, 1, 2), date(2024, 1, 3)


def test_first_copies_of_new_ids_are_kept() -> None:
    seen = SeenIds(lambda day: ["a", "b"] if day == D1 else [], max_ids=100)
    assert seen.fresh(D1, ["a", "c", "c", "d", "b", "d"]) == [1, 3]
    seen.add(D1, ["c", "d"])
    assert seen.fresh(D1, ["c", "e"]) == [1]
    assert seen.fresh(D2, ["a", "c"]) == [0, 1]  # exact within a date only


def test_a_date_is_loaded_once_while_it_fits() -> None:
    loaded: list[date] = []
    seen = SeenIds(lambda day: loaded.append(day) or [], max_ids=100)
    seen.fresh(D1, ["a"])
    seen.add(D1, ["a"])
    seen.fresh(D1, ["a"])
    assert loaded == [D1] and seen.loads == 1 and len(seen) == 1


def test_least_recently_used_dates_go_and_come_back_from_disk() -> None:
    disk = {D1: ["a", "b"], D2: ["c", "d"], D3: ["e", "f"]}
    seen = SeenIds(lambda day: list(disk[day]), max_ids=4)
    seen.ids(D1)
    seen.ids(D2)
    seen.ids(D1)  # D2 is now the least recently used
    seen.ids(D3)
    assert len(seen) == 4 and seen.loads == 3
    assert seen.fresh(D2, ["c", "x"]) == [1]  # read again: still exact
    assert seen.loads == 4


def test_a_date_larger_than_the_bound_is_kept_whole() -> None:
    seen = SeenIds(lambda day: [f"x{i}" for i in range(10)], max_ids=3)
    assert seen.fresh(D1, ["x5", "y"]) == [1]
    assert len(seen) == 10


def test_the_bound_must_be_positive() -> None:
    with pytest.raises(ConfigError):
        SeenIds(lambda day: [], max_ids=0)
