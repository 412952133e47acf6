from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.data.datasets import load
from streamrec.data.names import MOVIELENS, SOURCES, check_dataset
from streamrec.errors import ConfigError


def test_one_list_of_movielens_names() -> None:
    assert MOVIELENS == tuple(SOURCES) == ("ml-1m", "ml-100k")


@pytest.mark.parametrize("name", ["ml-1m", "ml-100k", "snapshot-0123abcd"])
def test_movielens_and_snapshot_names_are_datasets(name: str) -> None:
    assert check_dataset(name) == name


@pytest.mark.parametrize("name", ["ml-20m", "snapshot-", "", "ML-1M"])
def test_other_names_are_config_errors_that_list_the_choices(name: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ml-1m, ml-100k"):
        check_dataset(name)
    with pytest.raises(ConfigError, match="ml-1m, ml-100k"):
        load(name, tmp_path)
