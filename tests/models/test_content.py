from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamrec.errors import ConfigError
from streamrec.models import ContentConfig, ContentSimilarity
from streamrec.models.content import item_vectors
from tests.models.helpers import HoldOut, MakeData, assert_round_trip, mixed_data, tiny_items

GENRES = ["Comedy", "Comedy|Romance", "Horror", "Horror|Thriller", "Comedy", "", "Documentary"]
YEARS = [1995, 1996, 1995, 1994, 1950, 1995, None]
ITEMS = tiny_items(7, GENRES, YEARS)
# item 6 has no genres, item 7 no year; everything is equally popular
SEQS = [[1, 2, 3, 4, 5, 6, 7]]


def test_item_vectors_are_unit_rows_or_zero() -> None:
    vectors = item_vectors(ITEMS, 7)
    norms = np.linalg.norm(vectors, axis=1)
    assert norms[0] == 0 and np.allclose(norms[1:], 1.0)
    no_metadata = tiny_items(2, ["", "Drama"], [None, 1990])
    assert not item_vectors(no_metadata, 2)[1].any()


def test_same_genre_and_era_rank_first(make_data: MakeData) -> None:
    model = ContentSimilarity().fit(make_data(SEQS, 7, items=ITEMS))
    assert model.recommend(np.array([1]), 1)[0][0] == 2  # a comedy from the next year
    scores = model.score([np.array([1])])[0]
    assert scores[2] > scores[5]  # the era counts: a 1950 comedy is further
    assert scores[2] > scores[3]  # the genre counts: a 1995 horror film is further
    assert scores[5] > scores[7] and scores[3] > scores[7]  # nothing in common: popularity only


def test_the_profile_leans_to_recent_items(make_data: MakeData) -> None:
    model = ContentSimilarity(ContentConfig(recency_decay=0.5)).fit(make_data(SEQS, 7, items=ITEMS))
    comedy_last, horror_last = model.score([np.array([3, 1]), np.array([1, 3])])
    assert comedy_last[2] > comedy_last[4]
    assert horror_last[4] > horror_last[2]


def test_popularity_only_breaks_ties(make_data: MakeData) -> None:
    seqs = [[1, 5, 5, 5], [3]]  # items 1 and 5 have identical metadata; 5 is more popular
    items = tiny_items(5, ["Drama", "Comedy", "Comedy", "Comedy", "Drama"], [1990] * 5)
    scores = ContentSimilarity().fit(make_data(seqs, 5, items=items)).score([np.array([2])])[0]
    assert scores[3] > scores[4] > scores[1]  # 3 and 4 equal in content, 3 more popular; 1 unrelated
    assert scores[3] - scores[4] < 0.01


def test_bad_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        ContentConfig(year_bin=0)



@pytest.mark.parametrize("config", [ContentConfig(), ContentConfig(year_bin=2.0, genre_weight=0.0)])
@pytest.mark.parametrize("mmap", [False, True])
def test_state_round_trip_scores_bit_identically(make_data: MakeData, tmp_path: Path, config: ContentConfig,
                                                 mmap: bool) -> None:
    assert_round_trip(ContentSimilarity(config), mixed_data(make_data), tmp_path if mmap else None)

@pytest.mark.integration
def test_beats_random_on_ml100k(ml100k_holdout: HoldOut) -> None:
    hr = ml100k_holdout.hit_rate(ContentSimilarity().fit(ml100k_holdout.train))
    assert hr > 3 * ml100k_holdout.random_hit_rate()
