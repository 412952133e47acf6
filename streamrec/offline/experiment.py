"""The pipeline's acceptance experiment: members, full pipeline, fusion, and one ablation per source.

Every generator scores the validation and test cases once; each variant then reuses those
scores, so the ablation costs one ranker fit per variant and no extra generator work. All
numbers are full-catalogue metrics on the split's test part (see ``streamrec.eval.evaluate``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from streamrec.eval.evaluate import evaluate_rows
from streamrec.eval.protocols import Split
from streamrec.models.base import Recommender
from streamrec.models.recommend import clean_histories, item_counts
from streamrec.offline.assemble import PipelineSpec, case_contexts, fit_generators, score_cases, torch_ranker
from streamrec.offline.ranker_fit import RankerFit, build_lists, fit_ranker
from streamrec.rank.candidates import union_top_n
from streamrec.rank.features import ItemTable
from streamrec.rank.pipeline import Pipeline

__all__ = ["ExperimentConfig", "ExperimentResult", "candidate_recall", "run_experiment"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class ExperimentConfig:
    spec: PipelineSpec = field(default_factory=PipelineSpec)
    ablation: bool = True  # also drop each source in turn, and the ranker (fusion)
    recall_ns: tuple[int, ...] = (50, 100, 200)
    cutoffs: tuple[int, ...] = (10, 20)


@dataclass
class ExperimentResult:
    members: dict[str, dict[str, float]]  # each generator alone
    variants: dict[str, dict[str, float]]  # "pipeline", "fusion", "-<source>"
    recall: dict[int, float]  # candidate recall of the union on test, per N
    ranker_fit: RankerFit  # the full pipeline's ranker
    pipeline: Pipeline  # the full pipeline, ranked by ``ranker_fit``'s torch model
    seconds: dict[str, float]


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
    full: tuple[Pipeline, RankerFit | None] | None = None
    for label, sources, use_ranker in tqdm(plan, desc="variants", unit=" variant", leave=False,
                                           disable=None if progress else True):
        pipeline = _variant(generators, sources, table, spec.n_per_source)
        fit = None
        if use_ranker:
            lists = build_lists(pipeline, val_scores, val.histories, val.targets, val_contexts)
            fit = fit_ranker(lists, pipeline, spec.ranker, progress=False)
            pipeline.ranker = torch_ranker(fit)
            logger.info("%s: ranker best epoch %d, held-out list NDCG@10 %.4f", label, fit.best_epoch, fit.best_ndcg)

        def rows(lo: int, hi: int, pipeline: Pipeline = pipeline, sources: tuple[str, ...] = sources) -> np.ndarray:
            return pipeline.scores_from({s: test_scores[s][lo:hi] for s in sources}, test.histories[lo:hi],
                                        test_contexts[lo:hi])

        variants[label] = metrics_of(label, rows)
        if fit is not None:
            variants[label] |= {"ranker_best_epoch": float(fit.best_epoch), "ranker_holdout_ndcg10": fit.best_ndcg}
        if label == "pipeline":
            full = (pipeline, fit)
    assert full is not None and full[1] is not None, "the full pipeline is always ranked"
    done = time.monotonic()
    return ExperimentResult(members, variants, recall, full[1], full[0],
                            {"generators_and_scoring": scored - started, "variants": done - scored})


def _variant(generators: Mapping[str, Recommender], sources: Sequence[str], table: ItemTable, n: int) -> Pipeline:
    return Pipeline({s: generators[s] for s in sources}, table, dict.fromkeys(sources, n))
