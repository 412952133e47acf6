"""One training loop for every torch model; what differs between models is one epoch's steps and
how a model is validated.

An ``EpochSteps`` strategy turns the training data into the loss of each step: ``PaddedBatches``
gives shuffled mini-batches of left-padded sequences to ``model(inputs, targets) -> (logits, loss)``
(SASRec, BERT4Rec); GRU4Rec's session-parallel steps live in ``streamrec.train.gru4rec_fit`` and the
ranker's candidate lists in ``streamrec.offline.ranker_fit``. Everything else is here, once
(``run_loop``): seeding, the device, the optimizer, the progress bar, the per-epoch history, and
early stopping on the validation ``METRIC``. The best state_dict is kept in memory and loaded back
at the end; training stops after ``patience`` epochs without improvement, after ``epochs``, or
when the time budget runs out (checked after every step; the epoch then in progress is cut short
and still validated). ``train`` is that loop for a sequence model, validated by the one evaluation
function (``streamrec.eval.evaluate``) on the model's ``score``.
"""

from __future__ import annotations

import copy
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal, NamedTuple, Protocol

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from streamrec.errors import ConfigError
from streamrec.eval.evaluate import evaluate
from streamrec.eval.protocols import Cases
from streamrec.train.adapter import TorchSequenceRecommender
from streamrec.train.batches import Examples, batches

__all__ = [
    "METRIC",
    "EpochRecord",
    "EpochSteps",
    "OptimizerName",
    "PaddedBatches",
    "TrainConfig",
    "TrainResult",
    "Validate",
    "make_optimizer",
    "pick_device",
    "run_loop",
    "seed_everything",
    "train",
]

logger = logging.getLogger(__name__)

METRIC = "NDCG@10"

OptimizerName = Literal["adam", "adagrad"]
OPTIMIZERS: tuple[OptimizerName, ...] = ("adam", "adagrad")

#: The model's validation metrics as it is now, ``METRIC`` among them.
Validate = Callable[[], dict[str, float]]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """The loop's settings, the same for every model; a model's config holds its network alone."""

    epochs: int = 200
    batch_size: int = 128  # what one step takes: sequences, sessions (GRU4Rec's lanes) or candidate lists
    lr: float = 2e-3
    optimizer: OptimizerName = "adam"
    weight_decay: float = 0.0
    patience: int = 10  # epochs without a better validation NDCG@10
    budget_s: float | None = None  # wall-clock seconds for training and validation together
    seed: int = 0
    device: str | None = None  # None: CUDA when available, else CPU
    eval_batch_size: int = 512
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.lr > 0 or not self.weight_decay >= 0:
            raise ConfigError(f"lr must be positive and weight_decay >= 0, got lr={self.lr}, "
                              f"weight_decay={self.weight_decay}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"optimizer must be one of {', '.join(map(repr, OPTIMIZERS))}, got {self.optimizer!r}")
        if self.budget_s is not None and not self.budget_s > 0:
            raise ConfigError(f"budget_s must be positive, or None for no budget; got {self.budget_s}")


class EpochRecord(NamedTuple):
    epoch: int
    loss: float  # mean training loss over the epoch's steps
    val: dict[str, float]  # validation metrics; empty without validation cases
    seconds: float  # since training started
    steps: int = 0  # optimizer steps in this epoch (fewer than a full epoch's when the budget cut it)


@dataclass
class TrainResult:
    history: list[EpochRecord] = field(default_factory=list)
    best_epoch: int = 0
    best_metrics: dict[str, float] = field(default_factory=dict)
    stopped: str = ""  # why training ended: "epochs", "patience" or "budget"


class EpochSteps(Protocol):
    """One epoch of a model's training: the loss of each step, in order.

    The loop runs backward and the optimizer step on each yielded loss before it asks for the next,
    and may stop asking at any step (the time budget). ``rng`` is the run's seeded generator.
    """

    def n_steps(self, batch_size: int) -> int:
        """How many losses one epoch yields (for the progress bar)."""
        ...

    def losses(self, model: nn.Module, batch_size: int, device: torch.device,
               rng: np.random.Generator) -> Iterator[torch.Tensor]: ...


@dataclass(frozen=True)
class PaddedBatches:
    """Shuffled mini-batches of left-padded sequences for ``model(inputs, targets) -> (logits, loss)``."""

    examples: Examples

    def n_steps(self, batch_size: int) -> int:
        return -(-len(self.examples) // batch_size)

    def losses(self, model: nn.Module, batch_size: int, device: torch.device,
               rng: np.random.Generator) -> Iterator[torch.Tensor]:
        for inputs, targets in batches(self.examples, batch_size, rng):
            _, loss = model(torch.from_numpy(inputs).to(device), torch.from_numpy(targets).to(device))
            yield loss


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str | None = None) -> torch.device:
    return torch.device(name if name else ("cuda" if torch.cuda.is_available() else "cpu"))


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def run_loop(model: nn.Module, steps: EpochSteps, validate: Validate | None, config: TrainConfig, *,
             clock: Callable[[], float] = time.monotonic) -> TrainResult:
    """Train ``model`` in place and leave it holding its best weights (the last ones without ``validate``).

    ``validate`` is called after every epoch (it switches the model to eval mode itself; the loop
    switches it back to train mode for the next epoch), and its ``METRIC`` decides the best epoch.
    ``clock`` is a seam for tests of the time budget.
    """
    seed_everything(config.seed)
    device = pick_device(config.device)
    model.to(device)
    optimizer = make_optimizer(model, config)
    rng = np.random.default_rng(config.seed)
    start = clock()
    deadline = start + config.budget_s if config.budget_s is not None else float("inf")
    result = TrainResult()
    best_score, best_state, stale = -np.inf, copy.deepcopy(model.state_dict()), 0
    n_steps = steps.n_steps(config.batch_size)

    for epoch in range(1, config.epochs + 1):
        model.train()
        total, done = 0.0, 0
        bar = tqdm(steps.losses(model, config.batch_size, device, rng), total=n_steps,
                   desc=f"{type(model).__name__} epoch {epoch}", unit=" step", leave=False,
                   disable=None if config.progress else True)
        for loss in bar:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, done = total + loss.item(), done + 1
            bar.set_postfix(loss=f"{total / done:.4f}", refresh=False)
            if clock() >= deadline:
                break
        bar.close()

        val = validate() if validate is not None else {}
        mean_loss = total / max(done, 1)
        result.history.append(EpochRecord(epoch, mean_loss, val, clock() - start, done))
        logger.info("epoch %d loss %.4f over %d steps, val %s=%.4f", epoch, mean_loss, done, METRIC,
                    val.get(METRIC, np.nan))
        if config.progress:
            tqdm.write(f"epoch {epoch:3d}  loss {mean_loss:.4f}  val {METRIC} "
                       f"{val.get(METRIC, float('nan')):.4f}  {clock() - start:.0f}s")

        if not val or val[METRIC] > best_score:
            best_score, stale = val.get(METRIC, -np.inf), 0
            best_state = copy.deepcopy(model.state_dict())
            result.best_epoch, result.best_metrics = epoch, val
        else:
            stale += 1
        if clock() >= deadline:
            result.stopped = "budget"
            break
        if stale >= config.patience:
            result.stopped = "patience"
            break
    else:
        result.stopped = "epochs"

    model.load_state_dict(best_state)
    model.eval()
    return result


def train(model: nn.Module, steps: EpochSteps | Examples, validation: Cases | None, config: TrainConfig,
          *, n_items: int | None = None, max_len: int | None = None,
          clock: Callable[[], float] = time.monotonic) -> TrainResult:
    """``run_loop`` for a sequence model, validated by ``evaluate`` (NDCG@10) on ``validation``.

    ``steps`` is the epoch strategy; ``Examples`` stand for ``PaddedBatches(examples)``. ``n_items``
    and ``max_len`` size the validation adapter; they default to ``model.config``'s.
    """
    epoch_steps = PaddedBatches(steps) if isinstance(steps, Examples) else steps
    if validation is None or not len(validation):
        return run_loop(model, epoch_steps, None, config, clock=clock)
    cases = validation
    model_config = getattr(model, "config", None)
    n_items = n_items if n_items is not None else model_config.n_items  # type: ignore[union-attr]
    max_len = max_len if max_len is not None else model_config.max_len  # type: ignore[union-attr]
    scorer = TorchSequenceRecommender.from_module(model, n_items, max_len, name=type(model).__name__.lower(),
                                                  device=pick_device(config.device), batch_size=config.eval_batch_size)

    def validate() -> dict[str, float]:
        return evaluate(scorer, cases, cutoffs=(10,), batch_size=config.eval_batch_size, progress=False)

    return run_loop(model, epoch_steps, validate, config, clock=clock)
