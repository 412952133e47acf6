"""``streamrec retrain``: archive -> snapshot -> train -> gate -> promote -> notify -> prune.

Everything new is trained into a staging registry (``<registry>/.staging/<run>``) with the same
jobs as ``streamrec train`` and ``streamrec train-ranker``, under protocol B on the snapshot (the
newest ``test_days`` are the held-out slice). The staged release is then checked the way a server
checks it (sha256, vocabulary, smoke inference), measured on that slice against the release now
current (through ``VocabBridge``), and either promoted (moved in, pointers switched, ranker last,
servers notified) or kept as rejected with the reason in each manifest. Nothing a server reads
changes until the ranker's pointer moves.

The gate fails closed: when a release is current but cannot be loaded (a corrupt file, data this
machine lacks), there is nothing to compare with, and the new release is rejected with the reason,
unless ``force`` (``--force``) says to judge it on its own checks. No current release at all (the
first round) is not such a failure: the new one is promoted if its checks pass.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from streamrec import registry as reg
from streamrec.errors import ArtifactError, ConfigError, LoadError
from streamrec.retrain.gate import Decision, GateConfig, VocabBridge, decide
from streamrec.retrain.releases import move_in, promote, prune, release_of, served_contract, set_status

__all__ = ["RetrainConfig", "RetrainResult", "load_catalog", "run_retrain"]

logger = logging.getLogger(__name__)
Say = Callable[[str], None]


@dataclass(frozen=True, kw_only=True)
class RetrainConfig:
    archive: Path
    registry: Path
    data_dir: Path
    since_days: float | None = None  # train on the newest days of the archive only
    catalog: str | None = None  # item metadata: a MovieLens name (ml-1m) or a .parquet/.csv path
    models: tuple[str, ...] = ("sasrec", "gru4rec")
    sources: tuple[str, ...] = ("sasrec", "gru4rec", "itemknn", "mf", "pop")
    budget_s: float = 300.0  # per sequence model
    max_len: int = 50
    ranker_epochs: int = 20
    test_days: float = 7.0  # the held-out slice, and as many validation days before it
    gate: GateConfig = field(default_factory=GateConfig)
    keep: int = 5  # versions kept per model
    warm_start: bool = False  # initialise the sequence models from the current release
    force: bool = False  # promote even when the current release cannot be loaded to compare with
    notify: Callable[[], None] | None = None  # tell the servers (Redis pub/sub), after a promotion
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        if self.test_days <= 0 or self.budget_s <= 0 or self.keep < 1:
            raise ConfigError("test_days and budget_s must be positive and keep at least 1")
        missing = [m for m in self.models if m not in self.sources]
        if missing:
            raise ConfigError(f"models {missing} are trained but not among the pipeline's sources {self.sources}")


@dataclass
class RetrainResult:
    snapshot: str
    events: int
    release: dict[str, str]  # the staged versions
    new: dict[str, dict[str, float]]  # per model and for the pipeline: metrics on the held-out slice
    current: dict[str, dict[str, float]]
    decision: Decision
    seconds: dict[str, float]
    promoted: bool = False
    pruned: list[str] = field(default_factory=list)


def load_catalog(catalog: str | None, data_dir: Path) -> pd.DataFrame | None:
    if catalog is None:
        return None
    from streamrec.data.movielens import load
    from streamrec.data.names import MOVIELENS

    if catalog in MOVIELENS:
        return load(catalog, data_dir).items
    path = Path(catalog)
    if not path.is_file():
        raise ConfigError(f"no catalog {catalog}: give {', '.join(MOVIELENS)} or a .parquet/.csv file with item_id, "
                          "title, genres")
    return pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype={"item_id": str})


def run_retrain(config: RetrainConfig, *, say: Say = logger.info, events: pd.DataFrame | None = None) -> RetrainResult:
    """One retraining round (see the module docstring). ``events``: use these instead of reading the archive."""
    from streamrec.data.snapshots import events_to_dataset, write_snapshot

    seconds: dict[str, float] = {}
    started = time.monotonic()
    if events is None:
        from streamrec.archive.reader import read_archive

        events = read_archive(config.archive, since_days=config.since_days)
    data = events_to_dataset(events, load_catalog(config.catalog, config.data_dir))
    snapshot = write_snapshot(data, config.data_dir, {"test_days": config.test_days, "events": len(events)})
    say(f"snapshot {snapshot}: {len(events):,} events, {data.n_items:,} items, "
        f"{data.interactions['user_id'].nunique():,} users or sessions")
    seconds["snapshot"] = time.monotonic() - started

    staging = Path(config.registry) / reg.STAGING / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    staging.mkdir(parents=True, exist_ok=True)
    try:
        return _train_and_gate(config, snapshot, len(events), staging, seconds, say)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _train_and_gate(config: RetrainConfig, snapshot: str, n_events: int, staging: Path,
                    seconds: dict[str, float], say: Say) -> RetrainResult:
    from streamrec.offline.assemble import PipelineSpec
    from streamrec.offline.ranker_fit import RankerConfig
    from streamrec.offline.ranker_job import RankerJob, run_ranker_job
    from streamrec.offline.train_job import TrainJob, run_train_job
    from streamrec.serve.loader import RegistryLoader

    t = time.monotonic()
    serving = release_of(config.registry)
    init_from = {name: reg.version_dir(config.registry, name, serving[name]) for name in config.models
                 if config.warm_start and name in serving}
    contract = served_contract(config.registry, serving, config.models)
    if config.warm_start:
        say(f"warm start from {', '.join(f'{n} {p.name}' for n, p in init_from.items()) or 'nothing (no release yet)'}")
    job = run_train_job(TrainJob(models=config.models, dataset=snapshot, protocol="session",
                                 data_dir=config.data_dir, registry=staging, max_len=config.max_len,
                                 budget_s=config.budget_s, seed=config.seed, progress=config.progress,
                                 init_from=init_from, contract=contract), say=say)
    seconds["sequence_models"] = time.monotonic() - t
    t = time.monotonic()
    spec = PipelineSpec(sources=config.sources, registry=staging,
                        ranker=RankerConfig(epochs=config.ranker_epochs, seed=config.seed))
    ranked = run_ranker_job(RankerJob(dataset=snapshot, protocol="session", data_dir=config.data_dir,
                                      spec=spec, ablation=False), progress=config.progress)
    seconds["ranker"] = time.monotonic() - t
    assert ranked.version_dir is not None
    release = release_of(staging, ranked.version_dir.name)
    failures = [f"{run.name}: ONNX NDCG@10 {run.onnx_test.get('NDCG@10', float('nan')):.4f} differs from torch's "
                f"{run.test['NDCG@10']:.4f}" for run in job.runs
                if abs(run.onnx_test.get("NDCG@10", -1.0) - run.test["NDCG@10"]) > 1e-3]

    t = time.monotonic()
    try:
        RegistryLoader(staging).load(ranked.version_dir.name)  # the servers' own checks
    except LoadError as exc:
        failures.append(f"the staged release fails the server's checks: {exc}")
    new = {"pipeline": dict(ranked.served_test), **{run.name: dict(run.onnx_test) for run in job.runs}}
    current, unloadable = _current_metrics(config, snapshot)
    if unloadable is not None and config.force:
        say(f"the current release cannot be loaded ({unloadable}); --force: the new one is judged on its own")
    elif unloadable is not None:
        failures.append(f"the current release cannot be loaded to compare with ({unloadable}); fix it or roll it "
                        "back (streamrec models rollback), or pass --force to promote without a comparison")
    seconds["gate"] = time.monotonic() - t
    for name, m in new.items():
        say(f"{name:9} new  {_described(m)}" + (f"   current  {_described(current[name])}" if name in current else ""))
    decision = decide(new["pipeline"], current.get("pipeline"), failures, config.gate)
    for name in config.models:  # a sequence model may not fall behind its current version either
        if decision.promote and name in current:
            own = decide(new[name], current[name], (), config.gate)
            if not own.promote:
                decision = Decision(False, f"{name}: {own.reason}")
    say(("PROMOTE: " if decision.promote else "REJECT: ") + decision.reason)

    result = RetrainResult(snapshot, n_events, release, new, current, decision, seconds)
    moved = {name: move_in(staging / name / version, config.registry) for name, version in release.items()}
    status = "promoted" if decision.promote else "rejected"
    for name, version_dir in moved.items():
        set_status(version_dir, status, decision.reason, gate={"new": new.get(name, new["pipeline"]),
                                                               "current": current.get(name, current.get("pipeline"))})
    if decision.promote:
        promote(config.registry, release)
        result.promoted = True
        if config.notify is not None:
            config.notify()
        say(f"promoted release {release}")
    result.pruned = [str(p) for p in prune(config.registry, config.keep)]
    seconds["total"] = sum(seconds.values())
    return result


def _current_metrics(config: RetrainConfig, snapshot: str) -> tuple[dict[str, dict[str, float]], str | None]:
    """The release now served, measured on the new snapshot's held-out slice (empty when none serves),
    and why it cannot be loaded when it cannot (None otherwise)."""
    from streamrec.eval.evaluate import evaluate
    from streamrec.eval.protocols import make_split
    from streamrec.serve.loader import RegistryLoader

    if reg.read_pointer(config.registry, reg.RANKER) is None:
        return {}, None
    try:
        state = RegistryLoader(config.registry).load()
    except (LoadError, ArtifactError) as exc:
        return {}, str(exc)
    parts, vocab = make_split(snapshot, "session", config.data_dir)
    out = {"pipeline": evaluate(VocabBridge(state.pipeline, state.vocab, vocab), parts.test, progress=False)}
    for name in config.models:
        model = state.pipeline.generators.get(name)
        if model is not None:
            out[name] = evaluate(VocabBridge(model, state.vocab, vocab), parts.test, progress=False)
    return out, None


def _described(metrics: Mapping[str, float]) -> str:
    return "  ".join(f"{k} {metrics[k]:.4f}" for k in ("NDCG@10", "HR@20", "MRR@20") if k in metrics)
