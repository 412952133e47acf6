from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamrec.errors import ArtifactError, ConfigError
from streamrec.models import ALSConfig, MatrixFactorization
from streamrec.models.base import TrainData, top_k
from streamrec.models.mf import fold_in
from tests.models.helpers import HoldOut, MakeData, assert_round_trip, mixed_data


def two_tastes(make_data: MakeData) -> TrainData:
    """Users who like items 1..6 and users who like 7..12, each seeing a different slice."""
    rng = np.random.default_rng(7)
    seqs = [rng.choice(np.arange(1, 7), size=4, replace=False) for _ in range(20)]
    seqs += [rng.choice(np.arange(7, 13), size=4, replace=False) for _ in range(20)]
    return make_data(seqs, 12)


def test_a_history_scores_its_own_taste_first(make_data: MakeData) -> None:
    model = MatrixFactorization(ALSConfig(factors=2)).fit(two_tastes(make_data))  # the data has rank 2
    recs = [i for i, _ in model.recommend(np.array([1, 2]), 4)]
    assert set(recs) == {3, 4, 5, 6}
    recs = [i for i, _ in model.recommend(np.array([9]), 5)]
    assert set(recs) == {7, 8, 10, 11, 12}


@pytest.mark.parametrize("cg_steps", [None, 3], ids=["exact", "cg"])
def test_folding_in_a_training_user_gives_that_users_top_items(make_data: MakeData, cg_steps: int | None) -> None:
    data = two_tastes(make_data)
    model = MatrixFactorization(ALSConfig(factors=4, fold_in_decay=1.0, cg_steps=cg_steps)).fit(data)
    histories = list(data.sequences)
    folded = model.score(histories)
    trained = model.user_factors @ model.item_factors.T
    top_folded, _ = top_k(folded, 2, histories)
    top_trained, _ = top_k(trained, 2, histories)
    assert np.array_equal(np.sort(top_folded, axis=1), np.sort(top_trained, axis=1))
    if cg_steps is None:  # training's last user step is the fold-in itself (in float32)
        assert np.allclose(fold_in(histories, model.item_factors, 10.0, 1.0), model.user_factors, atol=1e-4)


def test_fold_in_decay_favours_the_latest_items(make_data: MakeData) -> None:
    data = two_tastes(make_data)
    model = MatrixFactorization(ALSConfig(factors=2, fold_in_decay=0.3)).fit(data)
    a_then_b, b_then_a = model.score([np.array([1, 2, 7]), np.array([7, 1, 2])])
    assert a_then_b[8:].mean() > a_then_b[3:7].mean()  # 7 (taste B) is the latest
    assert b_then_a[3:7].mean() > b_then_a[8:].mean()


def test_fit_is_seeded(make_data: MakeData) -> None:
    data = two_tastes(make_data)
    a = MatrixFactorization(ALSConfig(seed=1)).fit(data).item_factors
    b = MatrixFactorization(ALSConfig(seed=1)).fit(data).item_factors
    c = MatrixFactorization(ALSConfig(seed=2)).fit(data).item_factors
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_fold_in_of_nothing_is_zero(make_data: MakeData) -> None:
    model = MatrixFactorization().fit(two_tastes(make_data))
    assert not fold_in([np.array([], dtype=np.int64)], model.item_factors, 10.0, 1.0).any()


def test_bad_config_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        ALSConfig(cg_steps=0)
    with pytest.raises(ConfigError):
        ALSConfig(alpha=0.0)



@pytest.mark.parametrize("config", [ALSConfig(factors=4, iterations=3),
                                    ALSConfig(factors=3, iterations=2, cg_steps=None, fold_in_decay=1.0)])
@pytest.mark.parametrize("mmap", [False, True])
def test_state_round_trip_scores_bit_identically(make_data: MakeData, tmp_path: Path, config: ALSConfig,
                                                 mmap: bool) -> None:
    restored = assert_round_trip(MatrixFactorization(config), mixed_data(make_data), tmp_path if mmap else None)
    assert restored.user_factors.shape == (0, config.factors)  # scoring folds histories in: no training rows


def test_a_state_with_other_factors_is_refused(make_data: MakeData) -> None:
    state = MatrixFactorization(ALSConfig(factors=4, iterations=2)).fit(mixed_data(make_data)).state()
    with pytest.raises(ArtifactError, match="4 factors"):
        MatrixFactorization.from_state(ALSConfig(factors=4), {**state, "gram": state["gram"][:3, :3]})

@pytest.mark.integration
def test_beats_random_on_ml100k(ml100k_holdout: HoldOut) -> None:
    hr = ml100k_holdout.hit_rate(MatrixFactorization().fit(ml100k_holdout.train))
    assert hr > 3 * ml100k_holdout.random_hit_rate()
