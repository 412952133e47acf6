"""``streamrec tune``: a hyper-parameter search for one sequence model, on validation only.

Each trial trains the model as ``streamrec train`` does (``train_job.fit_model``: the same split,
early stopping on validation NDCG@10, a time budget per trial) with the settings Optuna's TPE
sampler proposes, and reports the best validation NDCG@10 it reached. The test cases are never
read: the search ends with the ``streamrec train`` command that trains the best settings and
tests them once. The search space of each model is ``SPACES``; a trial's network settings are
``--set`` fields of its config, and its loop settings the learning rate and batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

from streamrec.data.names import DEFAULT_DATASET, DatasetName
from streamrec.errors import ConfigError
from streamrec.eval.protocols import ProtocolName, make_split
from streamrec.offline.train_job import TrainJob, fit_model
from streamrec.train.loop import METRIC

__all__ = ["SPACES", "Space", "TuneJob", "TuneResult", "plot_trials", "run_tune", "train_command"]

logger = logging.getLogger(__name__)

#: A trial -> (network config fields, loop settings: ``lr`` and ``batch_size``).
Space = Callable[[Any], tuple[dict[str, Any], dict[str, Any]]]


def _gru4rec(trial: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Around RecBole's tuned GRU4Rec (64-d embeddings, 128 hidden units, 2 layers, dropout 0.3, lr 0.005),
    trained padded with the full cross-entropy at every position (protocol A's form)."""
    network: dict[str, Any] = {
        "training": "padded",
        "hidden_size": trial.suggest_categorical("hidden_size", [64, 128, 256]),
        "n_layers": trial.suggest_int("n_layers", 1, 2),
        "dropout_embed": trial.suggest_float("dropout_embed", 0.0, 0.5, step=0.05),
        "dropout_hidden": trial.suggest_float("dropout_hidden", 0.0, 0.5, step=0.05),
        "constrained_embedding": trial.suggest_categorical("constrained_embedding", [True, False]),
    }
    if not network["constrained_embedding"]:
        network["embedding_size"] = trial.suggest_categorical("embedding_size", [64, 128])
    loop = {"lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True),
            "batch_size": trial.suggest_categorical("batch_size", [64, 128, 256])}
    return network, loop


def _sasrec(trial: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    network = {"d_model": trial.suggest_categorical("d_model", [32, 64, 128]),
               "n_layers": trial.suggest_int("n_layers", 1, 3),
               "dropout": trial.suggest_float("dropout", 0.1, 0.5, step=0.05)}
    return network, {"lr": trial.suggest_float("lr", 5e-4, 5e-3, log=True), "batch_size": 128}


SPACES: Final[Mapping[str, Space]] = MappingProxyType({"gru4rec": _gru4rec, "sasrec": _sasrec})


@dataclass(frozen=True, kw_only=True)
class TuneJob:
    model: str = "gru4rec"
    dataset: DatasetName = DEFAULT_DATASET
    protocol: ProtocolName = "loo"
    data_dir: Path
    trials: int = 10
    budget_s: float | None = 300.0  # per trial
    epochs: int = 200
    patience: int = 5
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.model not in SPACES:
            raise ConfigError(f"no search space for {self.model!r}; tune one of {', '.join(SPACES)}")
        if self.trials < 1:
            raise ConfigError(f"trials must be at least 1, got {self.trials}")


@dataclass
class TuneResult:
    described: str
    trials: list[dict[str, Any]] = field(default_factory=list)  # number, params, network, loop, value, epochs, seconds
    best: dict[str, Any] = field(default_factory=dict)  # the best trial
    seconds: float = 0.0


def run_tune(job: TuneJob, *, say: Callable[[str], None] = logger.info) -> TuneResult:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parts, vocab = make_split(job.dataset, job.protocol, job.data_dir)
    outcome = TuneResult(f"{job.dataset.upper()}, {parts.summary['description']}")
    started = time.monotonic()

    def objective(trial: optuna.Trial) -> float:
        network, loop = SPACES[job.model](trial)
        train_job = TrainJob(models=(job.model,), dataset=job.dataset, protocol=job.protocol, data_dir=job.data_dir,
                             publish=False, epochs=job.epochs, patience=job.patience, budget_s=job.budget_s,
                             seed=job.seed, progress=job.progress, network={job.model: network}, **loop)
        _, _, settings, result, seconds = fit_model(train_job, job.model, parts, vocab, say=logger.info)
        value = float(result.best_metrics.get(METRIC, 0.0))
        outcome.trials.append({"number": trial.number, "params": dict(trial.params), "network": network,
                               "loop": {"lr": settings.lr, "batch_size": settings.batch_size}, "value": value,
                               "best_epoch": result.best_epoch, "epochs": len(result.history),
                               "stopped": result.stopped, "seconds": round(seconds, 1)})
        say(f"trial {trial.number + 1}/{job.trials}: validation {METRIC} {value:.4f} (best epoch {result.best_epoch} "
            f"of {len(result.history)}, {seconds:.0f}s) with {_settings_text(network, settings.lr, settings.batch_size)}")
        return value

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=job.seed))
    study.optimize(objective, n_trials=job.trials)
    outcome.seconds = time.monotonic() - started
    outcome.best = max(outcome.trials, key=lambda t: t["value"])
    return outcome


def _settings_text(network: Mapping[str, Any], lr: float, batch_size: int) -> str:
    return ", ".join([*(f"{k}={_value(v)}" for k, v in network.items()), f"lr={lr:.2g}", f"batch={batch_size}"])


def _value(v: Any) -> str:
    return ",".join(map(str, v)) if isinstance(v, tuple) else str(v).lower() if isinstance(v, bool) else str(v)


def train_command(job: TuneJob, best: Mapping[str, Any]) -> str:
    """The ``streamrec train`` command that trains ``best``'s settings and tests them."""
    sets = " ".join(f"--set {job.model}.{k}={_value(v)}" for k, v in best["network"].items())
    return (f"streamrec train --models {job.model} --dataset {job.dataset} --protocol {job.protocol} {sets} "
            f"--lr {best['loop']['lr']:.3g} --batch-size {best['loop']['batch_size']} --patience {job.patience}"
            + ("" if job.budget_s is None else f" --budget-min {job.budget_s / 60:g}"))


def plot_trials(result: TuneResult, path: Path, model: str) -> Path:
    """Each trial's validation NDCG@10 in order, and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    values = [t["value"] for t in result.trials]
    best = [max(values[: i + 1]) for i in range(len(values))]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(range(1, len(values) + 1), values, "o", label="trial")
    ax.plot(range(1, len(values) + 1), best, "-", color="tab:green", label="best so far")
    ax.set(xlabel="trial", ylabel=f"validation {METRIC}")
    ax.set_title(f"{model}: each trial's best validation {METRIC}\n{result.described}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="best")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
