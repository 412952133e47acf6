"""The synthetic catalogue keeps the trained vectors and draws the rest like them."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.errors import ConfigError
from streamrec.retrieval.synthetic import synthetic_catalogue
from tests.retrieval.test_ann import clustered


def test_the_trained_vectors_come_first_and_the_draws_resemble_them() -> None:
    trained = clustered(600, d=8, clusters=4)
    catalogue = synthetic_catalogue(trained, 5000, components=4)
    assert catalogue.shape == (5000, 8) and catalogue.dtype == np.float32
    np.testing.assert_array_equal(catalogue[:600], trained)
    drawn = catalogue[600:]
    assert np.abs(drawn.mean(0) - trained.mean(0)).max() < 0.2 * trained.std()
    norms, drawn_norms = np.linalg.norm(trained, axis=1), np.linalg.norm(drawn, axis=1)
    assert abs(np.median(drawn_norms) - np.median(norms)) < 0.1 * np.median(norms)
    np.testing.assert_array_equal(synthetic_catalogue(trained, 5000, components=4), catalogue)  # seeded
    assert not np.array_equal(synthetic_catalogue(trained, 5000, components=4, seed=1), catalogue)


def test_a_smaller_catalogue_is_the_trained_vectors_alone_and_too_few_are_refused() -> None:
    trained = clustered(100, d=4)
    np.testing.assert_array_equal(synthetic_catalogue(trained, 50), trained[:50])
    with pytest.raises(ConfigError, match="too few"):
        synthetic_catalogue(trained[:10], 1000, components=16)
