"""Load a ranker version from the registry into a checked ``ServingState``, or refuse it.

The same assembly as ``streamrec.offline.assemble.load_pipeline``, with three differences a server
needs (which is why it is not a plain call to it):

- it loads *named* versions (the ranker's, and the neural generator versions its manifest says it
  was trained with), never "whatever CURRENT says now", so a publish in the middle of a load cannot
  mix versions;
- the dataset, the split and the generators fitted on it are cached per split, so a new ranker
  version for the same split swaps in seconds instead of refitting everything;
- everything is checked before the state is handed over: the version names (``streamrec.registry``)
  and the dataset's (``check_dataset``), which the manifest supplies and which become paths; the
  sha256 (by the loaders, which run the very bytes they hashed); that every part was trained on the same split and vocabulary, and a
  smoke inference.

Only ONNX and JSON are read from the registry (``load_onnx``/``load_ranker``): no pickle, no code.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from streamrec import registry as reg
from streamrec.data.names import check_dataset
from streamrec.errors import LoadError
from streamrec.models.base import Recommender
from streamrec.rank.features import ItemTable, SessionContext
from streamrec.rank.pipeline import Pipeline
from streamrec.serve.state import ServingState

__all__ = ["RegistryLoader"]

logger = logging.getLogger(__name__)

@dataclass
class _SplitCache:
    """The data of one split: its key, the dataset's vocabulary, the split, fitted generators, the table."""

    key: str
    dataset: str
    vocab: tuple[str, ...]
    split: Any
    fitted: dict[str, Recommender] = field(default_factory=dict)
    table: ItemTable | None = None


class RegistryLoader:
    """Builds ``ServingState``s from ``registry``; thread-safe (one load at a time)."""

    def __init__(self, registry: Path, data_dir: Path, *, fold_ranker: bool = True) -> None:
        self.registry = Path(registry)
        self.data_dir = Path(data_dir)
        self.fold_ranker = fold_ranker  # serve DeepFM through streamrec.rank.folded (same logits, less work)
        self._cache: _SplitCache | None = None
        self._lock = threading.Lock()

    def load(self, version: str | None = None) -> ServingState:
        """The state for ranker ``version`` (default: CURRENT). Raises ``LoadError`` with the reason."""
        with self._lock:
            version = version or reg.read_pointer(self.registry, reg.RANKER)
            if version is None:
                raise LoadError(f"no {reg.RANKER} version is CURRENT under {self.registry}; "
                                "train one with `streamrec train-ranker --registry ...`")
            try:
                return self._load(version)
            except LoadError:
                raise
            except Exception as exc:  # noqa: BLE001 - whatever a bad artifact raises, the old state keeps serving
                # ArtifactError (sha256, layout, a bad version name), onnxruntime's errors on a corrupt graph...
                raise LoadError(f"{reg.RANKER} version {version} under {self.registry} refused: "
                                f"{type(exc).__name__}: {exc}") from exc

    def _load(self, version: str) -> ServingState:
        from streamrec.export import load_onnx, load_ranker

        ranker_dir = reg.version_dir(self.registry, reg.RANKER, version)
        ranker = load_ranker(ranker_dir)  # checks the sha256
        manifest = ranker.manifest
        spec = manifest.get("pipeline") or {}
        if not spec.get("sources"):
            raise LoadError(f"{reg.RANKER} version {version} has no pipeline spec in its manifest; publish it again")
        cache = self._split(check_dataset(manifest.get("dataset")), manifest["protocol"])
        expected = json.loads(cache.key)
        versions = {reg.RANKER: version}
        generators: dict[str, Recommender] = {}
        recorded = spec.get("generator_versions") or {}
        for name in spec["sources"]:
            if name in reg.SEQUENCE_MODELS:
                wanted = recorded.get(name) or reg.read_pointer(self.registry, name)
                if wanted is None:
                    raise LoadError(f"{reg.RANKER} version {version} needs {name}, which has no version under "
                                    f"{self.registry}")
                model = load_onnx(reg.version_dir(self.registry, name, wanted))  # checks the sha256
                if model.manifest.get("protocol") != expected:
                    raise LoadError(f"{name} version {wanted} was trained on another split than "
                                    f"{reg.RANKER} {version}")
                if tuple(model.vocab) != cache.vocab:
                    raise LoadError(f"{name} version {wanted} has another item vocabulary than dataset "
                                    f"{cache.dataset}; retrain it")
                generators[name] = model
                versions[name] = str(wanted)
            else:
                generators[name] = self._fitted(cache, name)
        table = self._table(cache)
        sizes = manifest.get("config", {}).get("sparse_sizes") or [0]
        if int(sizes[0]) != table.n_items + 1:
            raise LoadError(f"{reg.RANKER} version {version} embeds {int(sizes[0]) - 1} items, the data has "
                            f"{table.n_items}: a mismatched vocabulary; retrain the ranker")
        if ranker.vocab is not None and tuple(ranker.vocab) != cache.vocab:
            raise LoadError(f"{reg.RANKER} version {version} has another item vocabulary than dataset {cache.dataset}")
        if tuple(spec.get("genres", ())) != table.genre_names:
            raise LoadError(f"{reg.RANKER} version {version}'s genre vocabulary differs from the data's; retrain it")
        ranker_fn = ranker.score
        if self.fold_ranker:
            from streamrec.rank.folded import fold_ranker

            ranker_fn = fold_ranker(ranker, ranker.graph)  # the bytes the sha256 was checked on
        pipeline = Pipeline(generators, table, spec["n_per_source"], ranker_fn)
        popular = (np.argsort(-table.log_pop[1:], kind="stable") + 1).astype(np.int64)
        state = ServingState(pipeline, cache.vocab, versions, cache.dataset, popular)
        smoke_test(state)
        return state

    def _split(self, dataset: str, protocol: Mapping[str, object]) -> _SplitCache:
        from streamrec.data.datasets import load
        from streamrec.eval.protocols import protocol_from_summary, split

        key = json.dumps(protocol, sort_keys=True)
        if self._cache is not None and self._cache.key == key and self._cache.dataset == dataset:
            return self._cache
        data = load(dataset, self.data_dir)
        parts = split(data, protocol_from_summary(protocol))
        if json.loads(json.dumps(dict(parts.summary))) != json.loads(key):
            raise LoadError(f"the {dataset} data under {self.data_dir} does not reproduce the split the ranker "
                            "was trained on (another version of the data?); retrain the ranker")
        self._cache = _SplitCache(key, dataset, tuple(data.vocab), parts)  # the old split's models go
        logger.info("split ready event=split_loaded dataset=%s protocol=%s items=%s", dataset,
                    protocol.get("protocol"), data.n_items)
        return self._cache

    @staticmethod
    def _fitted(cache: _SplitCache, name: str) -> Recommender:
        if name not in cache.fitted:
            from streamrec.offline.assemble import fit_generators

            cache.fitted[name] = fit_generators([name], cache.split, None, progress=False)[name]
        return cache.fitted[name]

    @staticmethod
    def _table(cache: _SplitCache) -> ItemTable:
        if cache.table is None:
            similarity = getattr(cache.fitted.get("itemknn"), "similarity", None)
            cache.table = ItemTable.build(cache.split.train, similarity)
        return cache.table


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
