"""Assemble a pipeline for one split: fit or load each generator, score cases once, train the ranker.

Neural generators are not trained here: they come from the model registry, and only a version
trained on this very split is accepted (its manifest records the split's summary), because a
model trained on another split may have seen this split's validation or test targets. The other
generators fit in seconds, so they are fitted on ``split.train``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from streamrec import registry as reg
from streamrec.errors import ConfigError
from streamrec.eval.protocols import Cases, Split
from streamrec.models.base import Recommender
from streamrec.offline.ranker_fit import RankerConfig, RankerFit, build_lists, fit_ranker
from streamrec.rank.features import ItemTable, SessionContext
from streamrec.rank.pipeline import Pipeline
from streamrec.registry import RANKER, SEQUENCE_MODELS

__all__ = ["DEFAULT_SOURCES", "PipelineSpec", "TwoStage", "case_contexts",
           "fit_generators", "load_pipeline", "publish_ranker", "score_cases", "torch_ranker"]

logger = logging.getLogger(__name__)

DEFAULT_SOURCES = ("sasrec", "gru4rec", "bert4rec", "itemknn", "vsknn", "mf", "content", "pop")


@dataclass(frozen=True, kw_only=True)
class PipelineSpec:
    sources: tuple[str, ...] = DEFAULT_SOURCES
    n_per_source: int = 50  # candidates each source proposes
    registry: Path | None = None  # where the neural generators are (Settings.registry); None: no neural source
    ranker: RankerConfig = field(default_factory=RankerConfig)
    use_ranker: bool = True  # False: plain score fusion (the ablation)

    def __post_init__(self) -> None:
        if not self.sources or len(set(self.sources)) != len(self.sources) or self.n_per_source < 1:
            raise ConfigError(f"a pipeline needs distinct sources and n_per_source >= 1, got {self}")


def fit_generators(names: Sequence[str], split: Split, registry: Path | None,
                   progress: bool = True) -> dict[str, Recommender]:
    """Each generator of ``names``: a neural one loaded from ``registry`` (its CURRENT version, which must
    have been trained on ``split``), the others fitted on ``split.train``."""
    from streamrec.eval.factory import create
    from streamrec.export import load_onnx

    expected = json.loads(json.dumps(dict(split.summary)))
    out: dict[str, Recommender] = {}
    for name in tqdm(names, desc="generators", unit=" model", leave=False, disable=None if progress else True):
        if name in SEQUENCE_MODELS:
            if registry is None:
                raise ConfigError(f"{name} comes from the model registry, and none was given (PipelineSpec.registry)")
            root = Path(registry)
            model = load_onnx(root / name)
            recorded = model.manifest.get("protocol")
            if recorded != expected:
                raise ConfigError(
                    f"{root / name} (version {model.manifest.get('version')}) was trained on another split "
                    f"({(recorded or {}).get('description', 'unknown')}, {(recorded or {}).get('interactions')} "
                    f"interactions); train it on this one first: streamrec train --models {name} "
                    f"--protocol {split.summary['protocol']} --registry {root}")
            out[name] = model
        else:
            out[name] = create(name).fit(split.train)
    return out


def score_cases(generators: Mapping[str, Recommender], histories: Sequence[np.ndarray], *, batch_size: int = 512,
                progress: bool = True) -> dict[str, np.ndarray]:
    """Each generator's (N, n_items + 1) float32 scores of ``histories``, computed once."""
    out = {}
    for name, model in generators.items():
        parts = [np.asarray(model.score(histories[lo:lo + batch_size]), dtype=np.float32)
                 for lo in tqdm(range(0, len(histories), batch_size), desc=f"scoring {name}", unit=" batch",
                                leave=False, disable=None if progress else True)]
        out[name] = np.concatenate(parts) if parts else np.zeros((0, 1), dtype=np.float32)
    return out


def case_contexts(cases: Cases) -> list[SessionContext]:
    """Offline, a case's request happens at its target's time."""
    return [SessionContext(times=t, now=float(n)) for t, n in zip(cases.history_times, cases.target_times, strict=True)]


def torch_ranker(fit: RankerFit):  # type: ignore[no-untyped-def]
    """A ``RankerFn`` over a trained torch ranker (evaluation before export; the server uses ONNX)."""
    import torch

    model = fit.model.eval()

    @torch.no_grad()
    def score(sparse: np.ndarray, multi: np.ndarray, dense: np.ndarray) -> np.ndarray:
        return model.score(torch.from_numpy(sparse), torch.from_numpy(multi), torch.from_numpy(dense)).numpy()

    return score


class TwoStage:
    """``pipeline`` for ``streamrec evaluate``: ``fit_split`` fits the generators, trains the ranker on
    the validation cases, and from then on scores like any model (through ``Pipeline``)."""

    name = "pipeline"

    def __init__(self, spec: PipelineSpec = PipelineSpec(), progress: bool = False) -> None:
        self.spec = spec
        self.progress = progress
        self.pipeline: Pipeline | None = None
        self.ranker_fit: RankerFit | None = None

    def fit(self, data: object) -> TwoStage:
        raise ConfigError("the pipeline learns its ranker from the validation part: fit it with fit_split(split)")

    def fit_split(self, split: Split) -> TwoStage:
        generators = fit_generators(self.spec.sources, split, self.spec.registry, self.progress)
        similarity = getattr(generators.get("itemknn"), "similarity", None)
        table = ItemTable.build(split.train, similarity)
        n = {s: self.spec.n_per_source for s in self.spec.sources}
        pipeline = Pipeline(generators, table, n)
        if self.spec.use_ranker:
            cases = split.validation
            scores = score_cases(generators, cases.histories, progress=self.progress)
            lists = build_lists(pipeline, scores, cases.histories, cases.targets, case_contexts(cases),
                                progress=self.progress)
            self.ranker_fit = fit_ranker(lists, pipeline, self.spec.ranker, progress=self.progress)
            pipeline.ranker = torch_ranker(self.ranker_fit)
        self.pipeline = pipeline
        return self

    def _fitted(self) -> Pipeline:
        if self.pipeline is None:
            raise ConfigError("the pipeline is not fitted yet: call fit_split(split)")
        return self.pipeline

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        return self._fitted().score(histories)

    def score_in_context(self, histories: Sequence[np.ndarray], times: Sequence[np.ndarray] | None = None,
                         now: np.ndarray | None = None) -> np.ndarray:
        return self._fitted().score_in_context(histories, times, now)


def publish_ranker(fit: RankerFit, pipeline: Pipeline, split: Split, *, vocab: Sequence[str], dataset: str,
                   metrics: Mapping[str, object], registry: Path,
                   architectures: Mapping[str, Mapping[str, object]] | None = None) -> Path:
    """Publish a whole release to ``registry``: each fitted generator as a version of its own (arrays),
    then the ranker (``<registry>/deepfm/<version>``, whatever its network), whose manifest names every
    member's version and holds what rebuilds the pipeline: the sources and their N, the feature layout,
    the vocabulary and the item table. Neural generators are already versions (they came from the
    registry). The manifest records the ranker's ``architecture`` (``fit.arch``; a server folds DeepFM
    only) and, when given, the ``architectures`` compared to choose it."""
    from streamrec.export import publish as publish_model
    from streamrec.export import publish_generator, ranker_graph
    from streamrec.rank.features import dense_names
    from streamrec.rank.release import ITEM_TABLE

    versions: dict[str, str] = {}
    for source, generator in pipeline.generators.items():
        if not hasattr(generator, "manifest"):  # fitted here: publish it
            published = publish_generator(generator, vocab=vocab, dataset=dataset, protocol=dict(split.summary),
                                          registry=registry)
            generator.manifest = reg.read_manifest(published)  # type: ignore[attr-defined]
        versions[source] = str(generator.manifest.get("version"))  # type: ignore[attr-defined]
    extra: dict[str, object] = {
        "architecture": fit.arch,
        **({"architectures": {a: dict(row) for a, row in architectures.items()}} if architectures else {}),
        "pipeline": {"sources": list(pipeline.sources), "n_per_source": dict(pipeline.n_per_source),
                     "dense_features": list(dense_names(pipeline.sources)),
                     "genres": list(pipeline.table.genre_names), "generator_versions": versions},
        "training": {"best_epoch": fit.best_epoch, "holdout_ndcg10": fit.best_ndcg, "stopped": fit.stopped,
                     "history": fit.history, "cases": "the split's validation part (see streamrec.offline.ranker_fit)"},
    }
    config = fit.model.config
    return publish_model(fit.model, config, name=RANKER, vocab=vocab, dataset=dataset, protocol=dict(split.summary),
                         metrics=metrics, registry=registry, extra=extra, graph=ranker_graph(config),
                         arrays={ITEM_TABLE: pipeline.table.state()})


def load_pipeline(split: Split, registry: Path, *, fold: bool = False, retrieve_above: int | None = None) -> Pipeline:
    """The served pipeline, exactly as a server loads it: the CURRENT release's artifacts
    (``streamrec.rank.release``), checked against ``split``; with the ranker's own ONNX logits, or
    with ``fold`` the folded DeepFM a server runs (``streamrec.rank.folded``); ``retrieve_above`` as
    ``Pipeline``'s."""
    from streamrec.rank.release import load_release

    root = Path(registry)
    version = reg.read_pointer(root, RANKER)
    if version is None:
        raise ConfigError(f"no {RANKER} version is CURRENT under {root}; publish one with streamrec train-ranker")
    release = load_release(root, version, fold=fold, retrieve_above=retrieve_above)
    if release.ranker.manifest.get("protocol") != json.loads(json.dumps(dict(split.summary))):
        raise ConfigError(f"the CURRENT ranker under {root / RANKER} was trained on another split; "
                          "rebuild it with streamrec train-ranker")
    return release.pipeline
