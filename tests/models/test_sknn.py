from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamrec.errors import ArtifactError, ConfigError
from streamrec.models import SKNN, VSKNN, SKNNConfig, VSKNNConfig
from tests.models.helpers import HoldOut, MakeData, assert_round_trip, mixed_data

DAY = 86_400


def test_neighbour_sessions_vote_for_their_items(make_data: MakeData) -> None:
    seqs = [[1, 2, 3], [1, 2, 4], [5, 6], [5, 6], [5, 6]]
    scores = SKNN().fit(make_data(seqs, 6)).score([np.array([1, 2])])[0]
    assert scores[3] > 0 and scores[4] > 0  # from the two sessions sharing 1 and 2
    assert scores[5] < 0 and scores[6] < 0  # no shared item: only the popularity back-fill


def test_cosine_prefers_the_closer_session(make_data: MakeData) -> None:
    # both sessions share item 1 with the history; the short one is closer in cosine terms
    seqs = [[1, 7], [1, 2, 3, 4, 5, 6, 8]]
    scores = SKNN().fit(make_data(seqs, 8)).score([np.array([1])])[0]
    assert scores[7] > scores[8] > 0


def test_k_keeps_only_the_most_similar_sessions(make_data: MakeData) -> None:
    seqs = [[1, 2, 3], [1, 9, 8, 7, 6, 5]]
    scores = SKNN(SKNNConfig(k=1)).fit(make_data(seqs, 9)).score([np.array([1, 2])])[0]
    assert scores[3] > 0 and scores[9] < 0


def test_sample_keeps_the_most_recent_candidate_sessions(make_data: MakeData) -> None:
    seqs = [[1, 2], [1, 3]]  # equally similar; the second ends later
    data = make_data(seqs, 3, timestamps=[[0, DAY], [5 * DAY, 6 * DAY]])
    scores = SKNN(SKNNConfig(sample_size=1)).fit(data).score([np.array([1])])[0]
    assert scores[3] > 0 and scores[2] < 0


def test_vsknn_weights_the_latest_history_items_most(make_data: MakeData) -> None:
    seqs = [[1, 5], [2, 6]]  # item 1 leads to 5, item 2 leads to 6
    data = make_data(seqs, 6)
    ordered = VSKNN(VSKNNConfig(idf_weight=0.0)).fit(data).score([np.array([1, 2]), np.array([2, 1])])
    assert ordered[0, 6] > ordered[0, 5] > 0  # 2 is the latest
    assert ordered[1, 5] > ordered[1, 6] > 0
    plain = SKNN().fit(data).score([np.array([1, 2])])[0]
    assert plain[5] == pytest.approx(plain[6])  # SKNN has no notion of order


def test_vsknn_idf_lifts_items_specific_to_the_neighbours(make_data: MakeData) -> None:
    # 3 and 4 both co-occur with 1 in one session; 4 is also in every other session
    seqs = [[1, 3, 4], [4, 5], [4, 6], [4, 7]]
    data = make_data(seqs, 7)
    flat = VSKNN(VSKNNConfig(idf_weight=0.0)).fit(data).score([np.array([1])])[0]
    idf = VSKNN(VSKNNConfig(idf_weight=1.0)).fit(data).score([np.array([1])])[0]
    assert flat[3] == pytest.approx(flat[4])
    assert idf[3] > idf[4] > 0
    assert idf[4] / flat[4] == pytest.approx(1.0)  # log(4 sessions / 4) = 0
    assert idf[3] / flat[3] == pytest.approx(1.0 + np.log(4.0))


def test_long_batches_are_chunked_consistently(make_data: MakeData) -> None:
    model = VSKNN().fit(make_data([[1, 2, 3], [2, 3, 4], [4, 5]], 5))
    histories = [np.array([1 + i % 5]) for i in range(1200)]
    scores = model.score(histories)
    assert np.array_equal(scores[1100], scores[0]) and np.array_equal(scores[1101], scores[1])


def test_bad_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        SKNNConfig(k=0)
    with pytest.raises(ConfigError):
        VSKNNConfig(idf_weight=-1.0)



@pytest.mark.parametrize("model", [SKNN(), SKNN(SKNNConfig(k=3, sample_size=5)), VSKNN(),
                                   VSKNN(VSKNNConfig(k=2, idf_weight=0.5, demote_history=False))])
@pytest.mark.parametrize("mmap", [False, True])
def test_state_round_trip_scores_bit_identically(make_data: MakeData, tmp_path: Path, model: SKNN,
                                                 mmap: bool) -> None:
    restored = assert_round_trip(model, mixed_data(make_data), tmp_path if mmap else None)
    assert type(restored) is type(model)
    assert np.array_equal(restored.session_len, model.session_len)  # derived at load, not stored
    assert restored.session_len.dtype == model.session_len.dtype


def test_a_sessions_t_that_is_not_the_transpose_is_refused(make_data: MakeData) -> None:
    state = VSKNN().fit(mixed_data(make_data)).state()
    other = VSKNN().fit(mixed_data(make_data, seed=1)).state()
    broken = {**state, **{k: v for k, v in other.items() if k.startswith("sessions_t.")}}
    with pytest.raises(ArtifactError, match="transpose"):
        VSKNN.from_state(VSKNNConfig(), broken)

@pytest.mark.integration
@pytest.mark.parametrize("model", [SKNN, VSKNN], ids=["sknn", "vsknn"])
def test_beats_random_on_ml100k(ml100k_holdout: HoldOut, model: type[SKNN]) -> None:
    hr = ml100k_holdout.hit_rate(model().fit(ml100k_holdout.train))
    assert hr > 3 * ml100k_holdout.random_hit_rate()
