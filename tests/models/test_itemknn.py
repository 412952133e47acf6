from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamrec.errors import ArtifactError, ConfigError
from streamrec.models import ItemKNN, ItemKNNConfig, MostPopular
from streamrec.models.itemknn import cooccurrence
from tests.models.helpers import HoldOut, MakeData, assert_round_trip, mixed_data


def test_cooccurrence_whole_sequence_and_window() -> None:
    seqs = [np.array([1, 2, 3]), np.array([1, 3])]
    whole = cooccurrence(seqs, 3, None).toarray()
    assert whole[1, 3] == whole[3, 1] == 2 and whole[1, 2] == 1 and whole[1, 1] == 2  # diagonal: sequence counts
    window = cooccurrence(seqs, 3, 1).toarray()
    assert window[1, 2] == window[2, 3] == 1 and window[1, 3] == 1  # [1, 3] is adjacent only in the second
    assert np.array_equal(window, window.T)


def test_the_co_occurring_item_ranks_first(make_data: MakeData) -> None:
    # 5 follows 1 in every sequence; 2..4 are more popular overall
    seqs = [[1, 5, 2], [1, 5, 3], [2, 3, 4], [4, 2, 3], [3, 4, 2]]
    model = ItemKNN(ItemKNNConfig(window=1, shrink=0.0)).fit(make_data(seqs, 5))
    assert model.recommend(np.array([1]), 1)[0][0] == 5


def test_recent_history_items_weigh_more(make_data: MakeData) -> None:
    seqs = [[1, 2], [1, 2], [3, 4], [3, 4]]  # 2 goes with 1, 4 goes with 3
    data = make_data(seqs, 4)
    recent_3 = ItemKNN(ItemKNNConfig(recency_decay=0.5)).fit(data).score([np.array([1, 3])])[0]
    assert recent_3[4] > recent_3[2] > 0
    flat = ItemKNN(ItemKNNConfig(recency_decay=1.0)).fit(data).score([np.array([1, 3])])[0]
    assert flat[4] == pytest.approx(flat[2])


def test_window_limits_co_occurrence(make_data: MakeData) -> None:
    data = make_data([[1, 2, 3, 4]], 4)
    assert ItemKNN(ItemKNNConfig(window=1)).fit(data).similarity[1, 4] == 0
    assert ItemKNN(ItemKNNConfig(window=None)).fit(data).similarity[1, 4] > 0


def test_shrink_damps_similarity_and_neighbours_prune_it(make_data: MakeData) -> None:
    data = make_data([[1, 2, 3, 4, 5]] * 3, 5)
    plain = ItemKNN(ItemKNNConfig(window=None, shrink=0.0)).fit(data)
    assert plain.similarity[1, 2] == pytest.approx(1.0)  # identical occurrence vectors: cosine 1
    assert ItemKNN(ItemKNNConfig(window=None, shrink=3.0)).fit(data).similarity[1, 2] == pytest.approx(0.5)
    pruned = ItemKNN(ItemKNNConfig(window=None, neighbours=2)).fit(data)
    assert np.diff(pruned.similarity.indptr).max() == 2
    assert pruned.similarity.diagonal().sum() == 0  # an item is never its own neighbour


def test_bad_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        ItemKNNConfig(window=0)
    with pytest.raises(ConfigError):
        ItemKNNConfig(recency_decay=0.0)



@pytest.mark.parametrize("config", [ItemKNNConfig(), ItemKNNConfig(window=None, neighbours=3, demote_history=False)])
@pytest.mark.parametrize("mmap", [False, True])
def test_state_round_trip_scores_bit_identically(make_data: MakeData, tmp_path: Path, config: ItemKNNConfig,
                                                 mmap: bool) -> None:
    restored = assert_round_trip(ItemKNN(config), mixed_data(make_data), tmp_path if mmap else None)
    assert restored.similarity.data.dtype == np.float64 and restored.counts.dtype == np.int64


def test_a_state_of_another_catalogue_is_refused(make_data: MakeData) -> None:
    state = ItemKNN().fit(mixed_data(make_data)).state()
    with pytest.raises(ArtifactError, match="counts"):
        ItemKNN.from_state(ItemKNNConfig(), {**state, "counts": state["counts"][:-1]})
    with pytest.raises(ArtifactError, match="lacks similarity.data"):
        ItemKNN.from_state(ItemKNNConfig(), {k: v for k, v in state.items() if k != "similarity.data"})

@pytest.mark.integration
def test_beats_random_and_popularity_on_ml100k(ml100k_holdout: HoldOut) -> None:
    hr = ml100k_holdout.hit_rate(ItemKNN().fit(ml100k_holdout.train))
    pop = ml100k_holdout.hit_rate(MostPopular().fit(ml100k_holdout.train))
    assert hr > 3 * ml100k_holdout.random_hit_rate()
    assert hr > pop + 0.05
