"""A synthetic catalogue of any size whose neighbourhoods look like a trained model's.

An index's speed and recall depend on how the item vectors cluster: uniform random vectors have no
neighbourhoods, and every index does badly on them. So the catalogue starts from a trained model's
item embeddings (SASRec's on ML-1M: 3,706 items), fits a Gaussian mixture with full covariances to
them (scikit-learn), and draws the other items from it: the clusters, their sizes, spreads and
correlations, and the vectors' norms, are those of the trained items.
"""

from __future__ import annotations

import numpy as np

from streamrec.errors import ConfigError

__all__ = ["fit_mixture", "synthetic_catalogue"]


def fit_mixture(embeddings: np.ndarray, components: int = 16, seed: int = 0):  # type: ignore[no-untyped-def]
    """A ``GaussianMixture`` fitted to ``embeddings`` (rows are items)."""
    from sklearn.mixture import GaussianMixture

    embeddings = np.asarray(embeddings, dtype=np.float64)
    if len(embeddings) < 2 * components:
        raise ConfigError(f"{len(embeddings)} embeddings are too few to fit {components} mixture components")
    return GaussianMixture(n_components=components, covariance_type="full", reg_covar=1e-4, random_state=seed,
                           max_iter=200).fit(embeddings)


def synthetic_catalogue(embeddings: np.ndarray, n: int, components: int = 16, seed: int = 0) -> np.ndarray:
    """``(n, d)`` float32 item vectors: the trained ``embeddings`` first (as many as fit), then draws
    from a mixture fitted to them, in a random order of components."""
    embeddings = np.asarray(embeddings, dtype=np.float32)
    real = embeddings[:n]
    extra = n - len(real)
    if extra <= 0:
        return real.copy()
    mixture = fit_mixture(embeddings, components, seed)
    mixture.random_state = seed  # sample() draws from it
    drawn, _ = mixture.sample(extra)
    order = np.random.default_rng(seed).permutation(extra)  # sample() returns them grouped by component
    return np.vstack([real, drawn[order].astype(np.float32)])
