"""``streamrec train-ranker``: run the pipeline experiment on a split, report it, publish the ranker.

The report is one table: each generator alone, the full pipeline, plain score fusion and the
pipeline without each source, all on the split's test part, plus the candidate recall of the
union. After publishing, the pipeline is evaluated twice more: with the exported ONNX ranker over
the generators fitted here, and as the published release a server loads (artifacts only), so the
published artifacts' own figures are known, and shown to be the same.

With several architectures (``RankerJob.archs``, ``train-ranker --arch all``) each is trained on the
same lists and compared in one more table (``format_architectures``), also in the report and the
published manifest under ``architectures``; the chosen one ranks the pipeline and is published.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from streamrec.data.names import DEFAULT_DATASET, DatasetName  # noqa: E402
from streamrec.errors import ConfigError  # noqa: E402
from streamrec.eval.evaluate import evaluate  # noqa: E402
from streamrec.eval.protocols import ProtocolName  # noqa: E402
from streamrec.models.recommend import item_counts  # noqa: E402
from streamrec.offline.assemble import PipelineSpec, load_pipeline, publish_ranker  # noqa: E402
from streamrec.offline.experiment import ExperimentConfig, ExperimentResult, run_experiment  # noqa: E402
from streamrec.retrieval.source import Retriever

__all__ = ["RankerJob", "RankerJobResult", "format_architectures", "format_report", "plot_report", "run_ranker_job"]

logger = logging.getLogger(__name__)

COLUMNS = ("NDCG@10", "HR@10", "MRR@20", "HR@20", "NDCG@20", "Coverage@20")


@dataclass(frozen=True, kw_only=True)
class RankerJob:
    dataset: DatasetName = DEFAULT_DATASET
    protocol: ProtocolName = "loo"
    data_dir: Path = Path("data")
    spec: PipelineSpec = field(default_factory=PipelineSpec)
    ablation: bool = True
    publish: bool = True
    archs: tuple[str, ...] = ()  # ranker networks to compare (ExperimentConfig.archs); empty: spec.ranker.arch
    choose: str | None = None  # the one to keep and publish; None: the best held-out list NDCG@10

    def __post_init__(self) -> None:
        self.experiment()  # checks archs and choose before any data is loaded

    def experiment(self) -> ExperimentConfig:
        return ExperimentConfig(spec=self.spec, ablation=self.ablation, archs=self.archs, choose=self.choose)


@dataclass
class RankerJobResult:
    described: str
    result: ExperimentResult
    version_dir: Path | None
    onnx_test: dict[str, float]  # the generators fitted in the job, with the exported ranker
    served_test: dict[str, float]  # the published release, loaded and run as a server does
    report: dict[str, object]
    # the same, every session-contract source retrieving from its index; {} without such a source
    retrieval_test: dict[str, float] = field(default_factory=dict)


def run_ranker_job(job: RankerJob, *, progress: bool = True) -> RankerJobResult:
    from streamrec.eval.protocols import make_split
    from streamrec.export import load_ranker

    if job.publish and job.spec.registry is None:
        raise ConfigError("publishing the ranker needs a registry (PipelineSpec.registry); or do not publish")
    parts, vocab = make_split(job.dataset, job.protocol, job.data_dir)
    described = f"{job.dataset.upper()}, {parts.summary['description']}"
    result = run_experiment(parts, job.experiment(), progress=progress)
    version_dir, onnx_test, served_test, retrieval_test = None, {}, {}, {}
    if job.publish:
        metrics = {"test": result.variants["pipeline"], "members_test": result.members,
                   "candidate_recall_test": {str(n): r for n, r in result.recall.items()}}
        version_dir = publish_ranker(result.ranker_fit, result.pipeline, parts, vocab=vocab, dataset=job.dataset,
                                     metrics=metrics, registry=job.spec.registry,
                                     architectures=result.architectures)
        counts = item_counts(parts.train)
        # the generators fitted here with the exported ranker, and the release as a server loads and
        # runs it (artifacts only, the folded ranker): the same answers, so the same figures
        result.pipeline.ranker = load_ranker(version_dir).score
        onnx_test = evaluate(result.pipeline, parts.test, train_counts=counts, progress=False)
        served = load_pipeline(parts, job.spec.registry, fold=True)
        served_test = evaluate(served, parts.test, train_counts=counts, progress=False)
        if any(isinstance(g, Retriever) for g in served.generators.values()):
            through = load_pipeline(parts, job.spec.registry, fold=True, retrieve_above=0)
            retrieval_test = evaluate(through, parts.test, train_counts=counts, progress=False)
    report = {
        "dataset": job.dataset, "protocol": dict(parts.summary), "spec": _jsonable(asdict(job.spec)),
        "members": result.members, "variants": result.variants,
        "candidate_recall": {str(n): r for n, r in result.recall.items()},
        "architecture": result.ranker_fit.arch,
        **({"architectures": result.architectures} if result.architectures else {}),
        "ranker": {"best_epoch": result.ranker_fit.best_epoch, "holdout_ndcg10": result.ranker_fit.best_ndcg,
                   "stopped": result.ranker_fit.stopped, "history": result.ranker_fit.history},
        "seconds": result.seconds, "published": str(version_dir) if version_dir else None,
        "onnx_pipeline_test": onnx_test,
        "served_release_test": served_test,
        "served_through_retrieval_test": retrieval_test or None,
    }
    return RankerJobResult(described, result, version_dir, onnx_test, served_test, report, retrieval_test)


def _jsonable(value: object) -> object:
    return json.loads(json.dumps(value, default=str))


def format_report(described: str, result: ExperimentResult) -> str:
    """The acceptance table: members, then pipeline variants, with the best member and recall."""
    head = f"{'model':14}" + "".join(f"{c:>12}" for c in COLUMNS)
    lines = [f"test cases of {described}", head, "-" * len(head)]

    def row(name: str, m: Mapping[str, float]) -> str:
        return f"{name:14}" + "".join(f"{m.get(c, float('nan')):>12.4f}" for c in COLUMNS)

    lines += [row(name, m) for name, m in result.members.items()]
    lines.append("-" * len(head))
    lines += [row(name, m) for name, m in result.variants.items()]
    lines.append("fusion: no ranker (mean of within-list z-scores); -<source>: the pipeline without that source")
    best = max(result.members, key=lambda s: result.members[s]["NDCG@10"])
    lines.append(f"best member by NDCG@10: {best} ({result.members[best]['NDCG@10']:.4f}); pipeline "
                 f"{result.variants['pipeline']['NDCG@10']:.4f}")
    lines.append("candidate recall of the union (test): " +
                 ", ".join(f"N={n}: {r:.4f}" for n, r in result.recall.items()))
    return "\n".join(lines)


ARCH_COLUMNS = ("holdout_NDCG@10", "NDCG@10", "HR@10", "MRR@20", "Coverage@20", "parameters", "train_seconds",
                "latency_p50_ms", "latency_p99_ms")


def format_architectures(architectures: Mapping[str, Mapping[str, object]], chosen: str) -> str:
    """The ranker networks compared on the same lists: held-out list and test figures, size, time, latency."""
    heads = ("held-out N@10", "NDCG@10", "HR@10", "MRR@20", "Cov@20", "params", "train s", "p50 ms", "p99 ms")
    head = f"{'ranker':10}" + "".join(f"{h:>14}" for h in heads)
    lines = ["ranker architectures (same lists and seed; test figures of the whole pipeline)", head, "-" * len(head)]
    for arch, row in architectures.items():
        cells = [f"{row[c]:>14,d}" if isinstance(row[c], int) else f"{float(row[c]):>14.4f}"  # type: ignore[arg-type]
                 for c in ARCH_COLUMNS]
        lines.append(f"{arch + (' *' if arch == chosen else ''):10}" + "".join(cells))
    latency = next(iter(architectures.values()), {}).get("latency_of", "")
    lines.append(f"* ranks the pipeline (and is published); latency: {latency}")
    return "\n".join(lines)


def plot_report(result: ExperimentResult, path: Path, title: str) -> Path:
    """Bars of NDCG@10 for members and variants, and the ranker's learning curve."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [*result.members, *result.variants]
    values = [m["NDCG@10"] for m in (*result.members.values(), *result.variants.values())]
    colours = ["tab:gray"] * len(result.members) + ["tab:blue"] * len(result.variants)
    fig, (bars, curve) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    bars.bar(names, values, color=colours)
    bars.set(ylabel="test NDCG@10", title="members (grey) and pipeline variants (blue)")
    bars.tick_params(axis="x", rotation=60)
    history = result.ranker_fit.history
    curve.plot([h["epoch"] for h in history], [h["holdout_ndcg10"] for h in history], marker=".")
    curve.set(xlabel="epoch", ylabel="held-out list NDCG@10", title="ranker training")
    for ax in (bars, curve):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
