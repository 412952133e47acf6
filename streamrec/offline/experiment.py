"""The pipeline's acceptance experiment: members, full pipeline, fusion, and one ablation per source.

Every generator scores the validation and test cases once; each variant then reuses those
scores, so the ablation costs one ranker fit per variant and no extra generator work. All
numbers are full-catalogue metrics on the split's test part (see ``streamrec.eval.evaluate``).

With several ``ExperimentConfig.archs`` the full pipeline's ranker is fitted once per architecture
on the same lists with the same seed, each is evaluated on test and timed (``ranker_latency``), and
the one with the best held-out list NDCG@10 (or ``choose``) ranks the pipeline and the ablations.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from tqdm import tqdm

from streamrec.errors import ConfigError
from streamrec.eval.evaluate import evaluate_rows
from streamrec.eval.protocols import Split
from streamrec.models.base import Recommender
from streamrec.models.deepfm import RankerConfig, RankerModule
from streamrec.models.recommend import clean_histories, item_counts
from streamrec.offline.assemble import PipelineSpec, case_contexts, fit_generators, score_cases, torch_ranker
from streamrec.offline.ranker_fit import RankerFit, build_lists, fit_ranker
from streamrec.rank.candidates import union_top_n
from streamrec.rank.features import ItemTable
from streamrec.rank.pipeline import Pipeline
from streamrec.registry import RANKER_ARCHS
from streamrec.stats import time_calls

__all__ = ["ExperimentConfig", "ExperimentResult", "candidate_recall", "ranker_latency", "run_experiment"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    spec: PipelineSpec = field(default_factory=PipelineSpec)
    ablation: bool = True  # also drop each source in turn, and the ranker (fusion)
    recall_ns: tuple[int, ...] = (50, 100, 200)
    cutoffs: tuple[int, ...] = (10, 20)
    archs: tuple[str, ...] = ()  # the ranker networks to compare (RANKER_ARCHS); empty: spec.ranker.arch alone
    choose: str | None = None  # which of archs ranks the pipeline; None: the best held-out list NDCG@10

    def __post_init__(self) -> None:
        unknown = [a for a in self.archs if a not in RANKER_ARCHS]
        if unknown or len(set(self.archs)) != len(self.archs):
            raise ConfigError(f"archs must be distinct names among {', '.join(RANKER_ARCHS)}, got {self.archs}")
        if self.choose is not None and self.choose not in (self.archs or (self.spec.ranker.arch,)):
            raise ConfigError(f"the chosen architecture {self.choose!r} is not among those trained "
                              f"({', '.join(self.archs or (self.spec.ranker.arch,))})")


@dataclass
class ExperimentResult:
    members: dict[str, dict[str, float]]  # each generator alone
    variants: dict[str, dict[str, float]]  # "pipeline", "fusion", "-<source>"
    recall: dict[int, float]  # candidate recall of the union on test, per N
    ranker_fit: RankerFit  # the full pipeline's ranker
    pipeline: Pipeline  # the full pipeline, ranked by ``ranker_fit``'s torch model
    seconds: dict[str, float]
    architectures: dict[str, dict[str, object]] = field(default_factory=dict)  # per arch compared, see _arch_row


def candidate_recall(scores: Mapping[str, np.ndarray], histories: Sequence[np.ndarray], targets: np.ndarray,
                     n: int, n_items: int, batch_size: int = 512) -> float:
    """Share of cases whose target is among the union of every source's top ``n`` (history excluded)."""
    hits = 0
    for lo in range(0, len(targets), batch_size):
        hist = clean_histories(histories[lo:lo + batch_size], n_items)
        cands = union_top_n({s: m[lo:lo + batch_size] for s, m in scores.items()}, dict.fromkeys(scores, n), hist)
        hits += int((cands.items == np.asarray(targets[lo:lo + batch_size])[:, None]).any(axis=1).sum())
    return hits / max(len(targets), 1)


def run_experiment(split: Split, config: ExperimentConfig = ExperimentConfig(), *,
                   progress: bool = True) -> ExperimentResult:
    spec = config.spec
    started = time.monotonic()
    generators = fit_generators(spec.sources, split, spec.registry, progress)
    val, test = split.validation, split.test
    val_scores = score_cases(generators, val.histories, progress=progress)
    test_scores = score_cases(generators, test.histories, progress=progress)
    scored = time.monotonic()
    counts = item_counts(split.train)

    def metrics_of(name: str, rows) -> dict[str, float]:  # type: ignore[no-untyped-def]
        return evaluate_rows(rows, test, name=name, cutoffs=config.cutoffs, train_counts=counts, progress=False)

    members = {s: metrics_of(s, lambda lo, hi, s=s: test_scores[s][lo:hi]) for s in spec.sources}
    recall = {n: candidate_recall(test_scores, test.histories, test.targets, n, split.train.n_items)
              for n in config.recall_ns}
    table = ItemTable.build(split.train, getattr(generators.get("itemknn"), "similarity", None))
    val_contexts, test_contexts = case_contexts(val), case_contexts(test)

    plan: list[tuple[str, tuple[str, ...], bool]] = [("pipeline", spec.sources, spec.use_ranker)]
    if config.ablation:
        plan.append(("fusion", spec.sources, False))
        plan += [(f"-{s}", tuple(x for x in spec.sources if x != s), True) for s in spec.sources if len(spec.sources) > 1]
    variants: dict[str, dict[str, float]] = {}
    architectures: dict[str, dict[str, object]] = {}
    ranker_config = spec.ranker
    full: tuple[Pipeline, RankerFit | None] | None = None
    for label, sources, use_ranker in tqdm(plan, desc="variants", unit=" variant", leave=False,
                                           disable=None if progress else True):
        pipeline = _variant(generators, sources, table, spec.n_per_source)

        def rows(lo: int, hi: int, pipeline: Pipeline = pipeline, sources: tuple[str, ...] = sources) -> np.ndarray:
            return pipeline.scores_from({s: test_scores[s][lo:hi] for s in sources}, test.histories[lo:hi],
                                        test_contexts[lo:hi])

        fit = None
        if not use_ranker:
            variants[label] = metrics_of(label, rows)
        else:  # the full pipeline: each compared architecture on the same lists; the others: the chosen one
            lists = build_lists(pipeline, val_scores, val.histories, val.targets, val_contexts)
            fits, tests = {}, {}
            for arch in (config.archs or (ranker_config.arch,)) if label == "pipeline" else (ranker_config.arch,):
                fits[arch] = fit_ranker(lists, pipeline, replace(ranker_config, arch=arch), progress=False)
                pipeline.ranker = torch_ranker(fits[arch])
                tests[arch] = metrics_of(label, rows)
                logger.info("%s: %s ranker best epoch %d, held-out list NDCG@10 %.4f", label, arch,
                            fits[arch].best_epoch, fits[arch].best_ndcg)
            if len(fits) > 1:
                architectures = {arch: _arch_row(fits[arch], tests[arch]) for arch in fits}
            chosen = config.choose or max(fits, key=lambda a: np.nan_to_num(fits[a].best_ndcg, nan=-np.inf))
            ranker_config = replace(ranker_config, arch=chosen)
            fit, variants[label] = fits[chosen], tests[chosen]
            pipeline.ranker = torch_ranker(fit)
            variants[label] |= {"ranker_best_epoch": float(fit.best_epoch), "ranker_holdout_ndcg10": fit.best_ndcg}
        if label == "pipeline":
            full = (pipeline, fit)
    assert full is not None and full[1] is not None, "the full pipeline is always ranked"
    done = time.monotonic()
    return ExperimentResult(members, variants, recall, full[1], full[0],
                            {"generators_and_scoring": scored - started, "variants": done - scored}, architectures)


LATENCY_OF = "ONNX graph, onnxruntime CPU, 1 intra-op thread, batch 1 of 200 candidates"


def _arch_row(fit: RankerFit, test: dict[str, float]) -> dict[str, object]:
    """One row of the architectures table: held-out and test figures, size, training time, latency."""
    return {"holdout_NDCG@10": fit.best_ndcg, **{k: test[k] for k in ("NDCG@10", "HR@10", "MRR@20", "Coverage@20")},
            "parameters": sum(p.numel() for p in fit.model.parameters()), "train_seconds": fit.seconds,
            "best_epoch": fit.best_epoch, "epochs": len(fit.history), **ranker_latency(fit.model),
            "latency_of": LATENCY_OF}


def ranker_latency(model: RankerModule, candidates: int = 200, runs: int = 200, seed: int = 0) -> dict[str, float]:
    """p50/p99 ms of ``model``'s exported ONNX graph scoring one list of ``candidates`` (valid random inputs)
    on one onnxruntime thread, as a server scores one request."""
    import tempfile
    from pathlib import Path

    from streamrec.export import export_onnx, ranker_graph
    from streamrec.export.onnx_load import OnnxRanker, ort_session

    config: RankerConfig = model.config  # type: ignore[assignment]
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx", ranker_graph(config))
        ranker = OnnxRanker(ort_session(path.read_bytes(), 1), {}, None)
    rng = np.random.default_rng(seed)
    sparse = np.stack([rng.integers(0, size, candidates) for size in config.sparse_sizes], axis=1)
    multi = (rng.random((candidates, config.n_multi)) < 0.2).astype(np.float32)
    dense = (np.asarray(config.dense_mean or 0.0) + rng.normal(size=(candidates, config.n_dense))).astype(np.float32)
    timing = time_calls(lambda: ranker.score(sparse, multi, dense), runs=runs, warmup=20)
    return {"latency_p50_ms": timing["p50_ms"], "latency_p99_ms": timing["p99_ms"]}


def _variant(generators: Mapping[str, Recommender], sources: Sequence[str], table: ItemTable, n: int) -> Pipeline:
    return Pipeline({s: generators[s] for s in sources}, table, dict.fromkeys(sources, n))
