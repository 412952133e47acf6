"""What ``streamrec train`` does: train sequence models on a MovieLens split, test them and publish them.

For each model named: build it from ``BUILDERS`` (model class, config class, epoch strategy and
per-model defaults), train it with the shared loop (early stopping on validation NDCG@10, best
state, time budget), evaluate it on the test cases, publish it as ONNX with its training history
in the manifest (``CURRENT`` then points at it), plot its curves next to it, and evaluate the
published ONNX version on the test cases again, which must agree with torch.

Model modules are imported only when their model is asked for, so a ``BUILDERS`` entry whose
module is missing (or lacks what it needs) fails with a ``ConfigError`` naming it, before any training.
Progress goes to a ``say`` callback (the CLI passes ``print``); the library itself only logs.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import time
import typing
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final, Literal

import torch

from streamrec.data.names import DEFAULT_DATASET, DatasetName
from streamrec.errors import ConfigError
from streamrec.eval.evaluate import evaluate
from streamrec.eval.protocols import ProtocolName, Split, make_split
from streamrec.models.base import TrainData
from streamrec.models.recommend import item_counts
from streamrec.train.adapter import TorchSequenceRecommender
from streamrec.train.batches import sequence_examples
from streamrec.train.curves import plot_curves
from streamrec.train.loop import (
    METRIC,
    EpochSteps,
    PaddedBatches,
    TrainConfig,
    TrainResult,
    pick_device,
    seed_everything,
    train,
)

__all__ = [
    "BUILDERS",
    "REPORTED",
    "Builder",
    "ModelRun",
    "TrainJob",
    "TrainJobResult",
    "fit_model",
    "parse_network",
    "run_train_job",
]

logger = logging.getLogger(__name__)

Say = Callable[[str], None]
TEST_CUTOFFS: Final = (10, 20)
REPORTED: Final = ("NDCG@10", "HR@10", "NDCG@20", "HR@20")


def padded_batches(data: TrainData, config: Any) -> EpochSteps:
    """Shuffled next-item mini-batches of left-padded sequences (SASRec, BERT4Rec)."""
    return PaddedBatches(sequence_examples(data.sequences, config.max_len))


def gru4rec_steps(data: TrainData, config: Any) -> EpochSteps:
    """GRU4Rec's session-parallel steps, or padded sequences (``config.training``)."""
    from streamrec.train.gru4rec_fit import epoch_steps

    return epoch_steps(data, config)


def random_prefixes(data: TrainData, config: Any) -> EpochSteps:
    """Fresh random prefixes and their next items each epoch (SR-GNN)."""
    from streamrec.train.prefixes import RandomPrefixes

    return RandomPrefixes(data.sequences, config.max_len)


def bpr_triples(data: TrainData, config: Any) -> EpochSteps:
    """BPR triples over the sequence-item graph (LightGCN)."""
    from streamrec.train.graph import BPRTriples

    return BPRTriples(data.sequences, data.n_items)


def graph_size(data: TrainData) -> dict[str, int]:
    """LightGCN's user nodes: one per training sequence."""
    return {"n_users": len(data.sequences)}


@dataclass(frozen=True)
class Builder:
    """How ``streamrec train`` makes one model. The model's constructor takes its config alone, which
    holds the network; ``configs`` makes it and the loop's settings; ``steps`` one epoch's training steps."""

    module: str  # imported only when this model is trained
    model_class: str
    config_class: str
    steps: Callable[[TrainData, Any], EpochSteps]
    max_len: int = 200  # the longest history the model reads (GRU4Rec: at inference only)
    batch_size: int = 128
    lr: float = 2e-3
    sizes: Callable[[TrainData], Mapping[str, int]] | None = None  # config fields sized by the data

    def classes(self) -> tuple[type, type]:
        """``(model class, config class)``, importing the module now."""
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if exc.name == self.module:
                raise ConfigError(f"{self.model_class} lives in the module {self.module}, which does not exist; "
                                  "fix its BUILDERS entry") from None
            raise ConfigError(f"importing {self.module} failed: {exc}; install what it needs") from exc
        missing = [n for n in (self.model_class, self.config_class) if not hasattr(module, n)]
        if missing:
            raise ConfigError(f"{self.module} does not define {' and '.join(missing)}")
        return getattr(module, self.model_class), getattr(module, self.config_class)

    def configs(self, config_class: type, n_items: int, max_len: int, loop: Mapping[str, Any],
                sized: Mapping[str, int] | None = None) -> tuple[Any, TrainConfig]:
        """The network's config (its defaults but for the catalogue, the length and the fields ``sizes``
        gave, ``sized``) and the loop's settings."""
        return config_class(n_items=n_items, max_len=max_len, **(sized or {})), TrainConfig(**loop)


#: model name -> builder. 200 items is SASRec's and BERT4Rec's ML-1M setting; GRU4Rec trains on whole
#: sessions step by step, and its ``max_len`` only bounds the history it is given at inference (and
#: the window of its padded training). 50 is SR-GNN's session graph, as RecBole sets it. The
#: learning rates of NeuMF, AutoRec and SR-GNN are the best of 1e-3, 2e-3 or 3e-3, and 5e-3 on
#: ML-100K's held-out last items, each trained for a fixed number of epochs. LightGCN takes 8,192
#: triples a step (the paper: 2,048), because every step propagates over the whole graph: on ML-1M
#: a step costs the same whatever its batch, and 2,048 left one epoch in a 4-minute budget.
BUILDERS: Final[Mapping[str, Builder]] = MappingProxyType({
    "sasrec": Builder("streamrec.models.sasrec", "SASRec", "SASRecConfig", padded_batches),
    "gru4rec": Builder("streamrec.models.gru4rec", "GRU4Rec", "GRU4RecConfig", gru4rec_steps,
                       max_len=50, batch_size=64),  # gru4rec_fit.train_config's defaults
    "bert4rec": Builder("streamrec.models.bert4rec", "Bert4Rec", "Bert4RecConfig", padded_batches, lr=1e-3),
    "neumf": Builder("streamrec.models.neumf", "NeuMF", "NeuMFConfig", padded_batches, lr=5e-3),
    "autorec": Builder("streamrec.models.autorec", "AutoRec", "AutoRecConfig", padded_batches, lr=5e-3),
    "srgnn": Builder("streamrec.models.srgnn", "SRGNN", "SRGNNConfig", random_prefixes, max_len=50, lr=3e-3),
    "lightgcn": Builder("streamrec.models.lightgcn", "LightGCN", "LightGCNConfig", bpr_triples,
                        batch_size=8192, lr=2e-2, sizes=graph_size),
})


@dataclass(frozen=True, kw_only=True)
class TrainJob:
    """One ``streamrec train`` run. ``None`` for ``max_len``, ``batch_size`` and ``lr`` means the
    model's default (``BUILDERS``); the other training settings apply to every model."""

    models: tuple[str, ...] = ("sasrec",)
    dataset: DatasetName = DEFAULT_DATASET
    protocol: ProtocolName = "loo"
    data_dir: Path
    publish: bool = True
    registry: Path | None = None  # where to publish (Settings.registry); needed when publish is set
    curves_dir: Path | None = None  # where curves go when not published; None: the current directory
    max_len: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    epochs: int = 200
    patience: int = 10
    budget_s: float | None = None  # per model: its training and validation, in seconds
    seed: int = 0
    device: str | None = None  # None: CUDA when available, else CPU
    progress: bool = True
    init_from: Mapping[str, Path] = field(default_factory=dict)  # model name -> version dir to warm-start from
    network: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # model -> config fields to override
    # what the published graph computes: "scores" (B, n_items + 1), or "session" (B, d) with the item table and
    # an index beside it, for retrieval at catalogue scale (streamrec.export.onnx_export, streamrec.retrieval)
    contract: Literal["scores", "session"] = "scores"

    def __post_init__(self) -> None:
        unknown = [n for n in self.models if n not in BUILDERS]
        if not self.models or unknown or len(set(self.models)) != len(self.models):
            raise ConfigError(f"models must be distinct names from {', '.join(BUILDERS)}; got {', '.join(self.models)}")
        if self.contract not in ("scores", "session"):
            raise ConfigError(f"contract must be scores or session, got {self.contract!r}")
        if self.contract == "session":
            lacking = [n for n in self.models if not hasattr(BUILDERS[n].classes()[0], "session")]
            if lacking:
                raise ConfigError(f"{', '.join(lacking)} cannot be published with the session contract (no session "
                                  "vector and item table); sasrec, gru4rec and bert4rec can")
        if self.max_len is not None and self.max_len < 1:
            raise ConfigError(f"max_len must be positive, got {self.max_len}")
        stray = [n for n in self.network if n not in self.models]
        if stray:
            raise ConfigError(f"settings given for {', '.join(stray)}, which this run does not train")
        for name, fields in self.network.items():  # the config checks its values (ConfigError) now, not after the data
            BUILDERS[name].classes()[1](n_items=1, **fields)
        for name in self.models:  # TrainConfig checks the rest (ConfigError), before anything is loaded
            TrainConfig(**self.loop_settings(name))

    def loop_settings(self, name: str) -> dict[str, Any]:
        """The ``TrainConfig`` fields for model ``name``."""
        builder = BUILDERS[name]
        return {"epochs": self.epochs, "patience": self.patience, "budget_s": self.budget_s, "seed": self.seed,
                "device": self.device, "progress": self.progress,
                "batch_size": self.batch_size if self.batch_size is not None else builder.batch_size,
                "lr": self.lr if self.lr is not None else builder.lr}


@dataclass
class ModelRun:
    """One model's outcome: its config, the loop's settings and result, test metrics of the torch
    model and of the published ONNX version, and where the version and curves went."""

    name: str
    config: Any
    settings: TrainConfig
    result: TrainResult
    train_s: float
    test: dict[str, float]
    curves: Path  # the PNG of loss and validation NDCG@10 per epoch
    version_dir: Path | None = None  # None when not published
    onnx_test: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainJobResult:
    described: str  # dataset and protocol, for people
    summary: dict[str, object]  # the split's summary, as published in manifests
    runs: list[ModelRun] = field(default_factory=list)


def parse_network(items: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``["gru4rec.hidden_size=128", "gru4rec.training=padded"]`` -> ``{"gru4rec": {"hidden_size": 128, ...}}``,
    each value converted to the type of its model config's field (int, float, str, bool or a tuple of
    ints, written ``32,16``). ``ConfigError`` names what is wrong."""
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        name, dot, field_name = key.strip().partition(".")
        if not sep or not dot or name not in BUILDERS:
            raise ConfigError(f"--set takes MODEL.FIELD=VALUE with MODEL among {', '.join(BUILDERS)}; got {item!r}")
        _, config_class = BUILDERS[name].classes()
        types = typing.get_type_hints(config_class)
        if field_name not in types or field_name in ("n_items", "n_users"):
            settable = ", ".join(f for f in types if f not in ("n_items", "n_users"))
            raise ConfigError(f"{config_class.__name__} has no settable field {field_name!r}; it has {settable}")
        out.setdefault(name, {})[field_name] = _convert(types[field_name], raw.strip(), item)
    return out


def _convert(kind: Any, raw: str, item: str) -> Any:
    """``raw`` as a ``kind`` field's value; strings and ``Literal`` choices stay text (the config checks them)."""
    try:
        if kind is bool:
            if raw.lower() not in ("true", "false", "1", "0"):
                raise ValueError(raw)
            return raw.lower() in ("true", "1")
        if kind in (int, float):
            return kind(raw)
        if typing.get_origin(kind) is tuple:
            return tuple(int(v) for v in raw.split(",") if v.strip())
        return raw
    except ValueError:
        raise ConfigError(f"--set {item}: {raw!r} is not a valid {getattr(kind, '__name__', kind)}") from None


def run_train_job(job: TrainJob, *, say: Say = logger.info) -> TrainJobResult:
    """Train, test, publish and plot every model of ``job`` in turn (see the module's docstring)."""
    for name in job.models:  # fail on a missing model first
        BUILDERS[name].classes()
    if job.publish:
        _registry(job)  # fail before training rather than after
    parts, vocab = make_split(job.dataset, job.protocol, job.data_dir)
    outcome = TrainJobResult(f"{job.dataset.upper()}, {parts.summary['description']}", dict(parts.summary))
    for name in job.models:
        outcome.runs.append(_run_model(job, name, parts, vocab, outcome.described, say))
    return outcome


def fit_model(job: TrainJob, name: str, parts: Split, vocab: list[str],
              say: Say = logger.info) -> tuple[torch.nn.Module, Any, TrainConfig, TrainResult, float]:
    """Build model ``name`` as ``job`` says and train it on ``parts.train``, early-stopping on
    ``parts.validation``: ``(model with its best weights, its config, the loop's settings, the loop's
    result, training seconds)``. Nothing of ``parts.test`` is read."""
    builder = BUILDERS[name]
    model_class, config_class = builder.classes()
    max_len = job.max_len if job.max_len is not None else builder.max_len
    sized = {**(builder.sizes(parts.train) if builder.sizes is not None else {}), **job.network.get(name, {})}
    config, settings = builder.configs(config_class, parts.train.n_items, max_len, job.loop_settings(name), sized)
    seed_everything(settings.seed)  # the initial weights; the loop seeds again for dropout and batches
    model = model_class(config)
    if name in job.init_from:
        from streamrec.train.warm import warm_start

        fresh = warm_start(model, job.init_from[name], vocab)
        say(f"{name}: warm start from {job.init_from[name]}" + (f" (fresh: {', '.join(fresh)})" if fresh else ""))
    # models that draw negatives by popularity (SASRec's sampled-ce) learn it from the training data
    if hasattr(model, "set_sampling_distribution"):
        model.set_sampling_distribution(item_counts(parts.train))
    steps = builder.steps(parts.train, config)
    say(f"training {name} on {job.dataset.upper()}, {parts.summary['description']}: "
        f"{len(parts.train.sequences):,} sequences, max_len {max_len}, batch {settings.batch_size}, lr {settings.lr:g}, "
        f"budget {'none' if settings.budget_s is None else f'{settings.budget_s:g}s'}, "
        f"up to {settings.epochs} epochs, on {pick_device(settings.device)}")
    started = time.monotonic()
    result = train(model, steps, parts.validation, settings)
    train_s = time.monotonic() - started
    say(f"{name}: best epoch {result.best_epoch} of {len(result.history)} (stopped: {result.stopped}), "
        f"{train_s:.0f}s; validation {METRIC} {result.best_metrics.get(METRIC, float('nan')):.4f}")
    return model, config, settings, result, train_s


def _run_model(job: TrainJob, name: str, parts: Split, vocab: list[str], described: str, say: Say) -> ModelRun:
    model, config, settings, result, train_s = fit_model(job, name, parts, vocab, say)
    scorer = TorchSequenceRecommender.from_module(model, config.n_items, config.max_len, name=name)
    test = evaluate(scorer, parts.test, cutoffs=TEST_CUTOFFS, progress=job.progress)
    say(f"{name} test on {described} ({len(parts.test):,} cases): " + "  ".join(f"{k} {test[k]:.4f}" for k in REPORTED))
    run = ModelRun(name, config, settings, result, train_s, test,
                   (job.curves_dir or Path.cwd()) / f"{name}-{job.dataset}-{job.protocol}-curves.png")
    if job.publish:
        run.version_dir = _publish(job, model, run, parts, vocab)
        run.curves = run.version_dir / "curves.png"
    plot_curves(result.history, run.curves, f"{name} on {described}", best_epoch=result.best_epoch)
    if run.version_dir is not None:
        from streamrec.export import load_onnx

        run.onnx_test = evaluate(load_onnx(run.version_dir), parts.test, cutoffs=TEST_CUTOFFS, progress=False)
    return run


def _registry(job: TrainJob) -> Path:
    if job.registry is None:
        raise ConfigError("publishing needs a registry (TrainJob.registry: Settings.registry); or set publish=False")
    return job.registry


def _publish(job: TrainJob, model: torch.nn.Module, run: ModelRun, parts: Split, vocab: list[str]) -> Path:
    """A new version of ``run.name`` in the registry, with the training history in its manifest."""
    from streamrec.export import publish, session_graph

    result = run.result
    training = {"best_epoch": result.best_epoch, "epochs_run": len(result.history), "stopped": result.stopped,
                "seconds": round(run.train_s, 1), "seed": run.settings.seed, "budget_s": run.settings.budget_s,
                "history": [{"epoch": r.epoch, "loss": r.loss, "val": r.val, "steps": r.steps,
                             "seconds": round(r.seconds, 1)} for r in result.history]}
    with warnings.catch_warnings():
        # Tracing nn.GRU (GRU4Rec) warns twice, about nothing that applies: its input-size checks become
        # constants, and an initial state sized by the traced batch would not fit other batches, but
        # ``score`` passes none (ONNX's GRU then starts from zeros of any batch). The export is tested
        # on other batch sizes and lengths, and ``_run_model`` tests the published model again.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning, module=r"torch\.nn\.modules\.rnn")
        warnings.filterwarnings("ignore", "Exporting a model to ONNX with a batch_size other than 1", UserWarning)
        graph = session_graph(run.config.max_len) if job.contract == "session" else None
        version_dir = publish(model, run.config, name=run.name, vocab=vocab, dataset=job.dataset,
                              protocol=dict(parts.summary), registry=_registry(job), graph=graph,
                              metrics={"validation": result.best_metrics, "test": run.test},
                              extra={"training": training, "train_config": dataclasses.asdict(run.settings),
                                     "warm_start": str(job.init_from.get(run.name, "")) or None})
    from streamrec.train.warm import save_weights

    save_weights(model, version_dir)  # for a later warm start; servers read only the ONNX graph
    return version_dir
