"""Candidate generators behind one contract (``base.Recommender``): ``fit`` on training sequences,
``score`` the whole catalogue for a batch of histories, ``recommend`` the top-k of one.

The baselines exported here need only numpy and scipy, so importing this package never pulls in
torch. The neural networks (the sequence models ``sasrec``, ``gru4rec``, ``bert4rec`` and ``srgnn``,
the bag-of-items models ``neumf``, ``autorec`` and ``lightgcn`` with ``bag``'s fold-in, and the
rankers ``deepfm``, ``widedeep``, ``dcnv2`` and ``dlrm``) live in their own modules with their
configs and nothing else: what trains them, and adapts them to the contract, belongs to the
training layer.

- ``MostPopular`` ("pop"): recency-decayed counts; also every other model's cold-start fallback.
- ``ItemKNN`` ("itemknn"): cosine item-item similarity from co-occurrence within a window.
- ``SKNN`` / ``VSKNN`` ("sknn" / "vsknn"): session-kNN and its position- and IDF-weighted variant.
- ``MatrixFactorization`` ("mf"): implicit ALS; histories are folded in as new users.
- ``ContentSimilarity`` ("content"): genre and release-year vectors.
"""

from streamrec.models.content import ContentConfig, ContentSimilarity
from streamrec.models.itemknn import ItemKNN, ItemKNNConfig
from streamrec.models.mf import ALSConfig, MatrixFactorization
from streamrec.models.popularity import MostPopular, PopularityConfig
from streamrec.models.sknn import SKNN, VSKNN, SKNNConfig, VSKNNConfig

__all__ = [
    "SKNN",
    "VSKNN",
    "ALSConfig",
    "ContentConfig",
    "ContentSimilarity",
    "ItemKNN",
    "ItemKNNConfig",
    "MatrixFactorization",
    "MostPopular",
    "PopularityConfig",
    "SKNNConfig",
    "VSKNNConfig",
]
