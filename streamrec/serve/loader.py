"""Load a ranker version from the registry into a checked ``ServingState``, or refuse it.

The release is artifacts only (``streamrec.rank.release``): the ranker, the ONNX sequence models and
the generators' arrays its manifest names by version, and its item table. The server reads no
dataset and fits nothing, so it starts in the time it takes to map those files, and the processes
of one host share their pages. On top of ``load_release`` this adds what a long-running server needs:

- it loads *named* versions, never "whatever CURRENT says now", so a publish in the middle of a load
  cannot mix versions;
- members are kept between loads, so a new ranker over the same generators swaps in milliseconds;
  those no release uses any more are let go once the new state is built;
- a smoke inference before the state is handed over.

Only ONNX, JSON and ``.npy`` arrays are read from the registry: no pickle, no code.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from streamrec import registry as reg
from streamrec.errors import LoadError
from streamrec.models.base import Recommender
from streamrec.rank.features import SessionContext
from streamrec.rank.release import load_release
from streamrec.serve.state import ServingState

__all__ = ["RegistryLoader", "smoke_test"]

logger = logging.getLogger(__name__)


class RegistryLoader:
    """Builds ``ServingState``s from ``registry``; thread-safe (one load at a time)."""

    def __init__(self, registry: Path, *, fold_ranker: bool = True, retrieve_above: int | None = None) -> None:
        self.registry = Path(registry)
        self.fold_ranker = fold_ranker  # serve DeepFM through streamrec.rank.folded (same logits, ~3x less CPU)
        self.retrieve_above = retrieve_above  # the pipeline's (streamrec.rank.pipeline): None, never
        self._members: dict[tuple[str, str], Recommender] = {}
        self._last: tuple[str, ServingState] | None = None  # the latest version loaded, and its state
        self._lock = threading.Lock()

    def load(self, version: str | None = None) -> ServingState:
        """The state for ranker ``version`` (default: CURRENT). Raises ``LoadError`` with the reason.
        The latest version loaded is not loaded again: a version never changes once published, and
        the processes of ``serve --processes`` start on the very state loaded before they forked."""
        with self._lock:
            version = version or reg.read_pointer(self.registry, reg.RANKER)
            if version is None:
                raise LoadError(f"no {reg.RANKER} version is CURRENT under {self.registry}; "
                                "train one with `streamrec train-ranker --registry ...`")
            if self._last is not None and self._last[0] == version:
                return self._last[1]
            try:
                state = self._load(version)
            except LoadError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever a bad artifact raises, the old state keeps serving
                # ArtifactError (sha256, layout, a bad version name), onnxruntime's errors on a corrupt graph...
                raise LoadError(f"{reg.RANKER} version {version} under {self.registry} refused: "
                                f"{type(exc).__name__}: {exc}") from exc
            self._last = (version, state)
            return state

    def _load(self, version: str) -> ServingState:
        members = dict(self._members)  # a refused release leaves the cache as it was
        release = load_release(self.registry, version, fold=self.fold_ranker, members=members,
                               retrieve_above=self.retrieve_above)
        table = release.pipeline.table
        popular = (np.argsort(-table.log_pop[1:], kind="stable") + 1).astype(np.int64)
        state = ServingState(release.pipeline, release.vocab, release.versions, release.dataset, popular)
        smoke_test(state)
        used = set(release.versions.items())
        self._members = {key: model for key, model in members.items() if key in used}
        logger.info("release loaded event=release_loaded versions=%s", release.versions)
        return state


def smoke_test(state: ServingState, k: int = 10) -> None:
    """One real inference on a short session of popular items: it must return ``k`` known items with
    finite scores. Raises ``LoadError`` otherwise (e.g. a graph that loads but computes garbage)."""
    history = state.popular[:3][::-1].copy()
    context = SessionContext(times=np.arange(len(history), dtype=np.float64), now=float(len(history)))
    try:
        recs = state.pipeline.recommend(history, k, context)
    except (ValueError, RuntimeError, IndexError) as exc:
        raise LoadError(f"smoke inference failed: {type(exc).__name__}: {exc}") from exc
    n_items = state.pipeline.table.n_items
    if not recs or not all(1 <= r.item <= n_items and np.isfinite(r.score) for r in recs):
        raise LoadError(f"smoke inference returned {len(recs)} recommendation(s) with out-of-range items or "
                        "non-finite scores; the ranker is broken")
    if not recs or len(recs) < min(k, n_items - len(history)) // 2:
        raise LoadError(f"smoke inference returned only {len(recs)} of {k} items")
