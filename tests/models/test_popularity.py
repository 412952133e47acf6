from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamrec.errors import ConfigError
from streamrec.models import MostPopular, PopularityConfig
from tests.models.helpers import HoldOut, MakeData, assert_round_trip, mixed_data

DAY = 86_400


def test_ranks_by_count_and_ignores_the_history(make_data: MakeData) -> None:
    model = MostPopular(PopularityConfig(half_life_days=None)).fit(make_data([[1, 2, 3], [2, 3], [3]], 4))
    scores = model.score([np.array([], dtype=np.int64), np.array([4])])
    assert scores[0].tolist()[1:] == [1.0, 2.0, 3.0, 0.0]
    assert scores[1, 1:4].tolist() == [1.0, 2.0, 3.0]  # the history changes nothing but itself
    assert [i for i, _ in model.recommend(np.array([3]), 2)] == [2, 1]


def test_decay_favours_recent_items(make_data: MakeData) -> None:
    # item 1: three interactions 100 days before the end; item 2: two in the last days
    seqs = [[1, 1, 1], [2, 2]]
    stamps = [[0, DAY, 2 * DAY], [100 * DAY, 101 * DAY]]
    data = make_data(seqs, 2, timestamps=stamps)
    plain = MostPopular(PopularityConfig(half_life_days=None)).fit(data).score([np.array([], np.int64)])[0]
    decayed = MostPopular(PopularityConfig(half_life_days=30.0)).fit(data).score([np.array([], np.int64)])[0]
    assert plain[1] > plain[2]
    assert decayed[2] > decayed[1]
    assert decayed[2] == pytest.approx(1.0 + 0.5 ** (1 / 30))  # the latest event weighs 1, a day older 0.5**(1/30)


def test_bad_half_life_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="half_life_days"):
        PopularityConfig(half_life_days=0)



@pytest.mark.parametrize("config", [PopularityConfig(), PopularityConfig(half_life_days=7.5, demote_history=False)])
@pytest.mark.parametrize("mmap", [False, True])
def test_state_round_trip_scores_bit_identically(make_data: MakeData, tmp_path: Path, config: PopularityConfig,
                                                 mmap: bool) -> None:
    assert_round_trip(MostPopular(config), mixed_data(make_data), tmp_path if mmap else None)

@pytest.mark.integration
def test_beats_random_on_ml100k(ml100k_holdout: HoldOut) -> None:
    hr = ml100k_holdout.hit_rate(MostPopular().fit(ml100k_holdout.train))
    assert hr > 3 * ml100k_holdout.random_hit_rate()
