"""One training loop for every torch sequence model; what differs between models is one epoch's steps.

An ``EpochSteps`` strategy turns the training data into the loss of each step: ``PaddedBatches``
gives shuffled mini-batches of left-padded sequences to ``model(inputs, targets) -> (logits, loss)``
(SASRec, BERT4Rec); GRU4Rec's session-parallel steps live in ``streamrec.train.gru4rec_fit``.
Everything else is here, once: seeding, the device, the optimizer, the progress bar, validation
NDCG@10 through the one evaluation function (``streamrec.eval.evaluate``) on the model's ``score``,
the per-epoch history, and early stopping. The best state_dict is kept in memory and loaded back
at the end; training stops after ``patience`` epochs without improvement, after ``epochs``, or
when the time budget runs out (checked after every step; the epoch then in progress is cut short
and still validated).
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

from streamrec.eval.evaluate import evaluate
from streamrec.eval.protocols import Cases
from streamrec.train.adapter import TorchSequenceRecommender
from streamrec.train.batches import Examples, batches, sequence_examples

__all__ = [
    "METRIC",
    "fit_for_epochs",
    "EpochRecord",
    "EpochSteps",
    "OptimizerName",
    "PaddedBatches",
    "TrainConfig",
    "TrainResult",
    "make_optimizer",
    "pick_device",
    "seed_everything",
    "train",
]

logger = logging.getLogger(__name__)

METRIC = "NDCG@10"

OptimizerName = Literal["adam", "adagrad"]


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    epochs: int = 200
    batch_size: int = 128
    lr: float = 2e-3
    optimizer: OptimizerName = "adam"
    weight_decay: float = 0.0
    patience: int = 10  # epochs without a better validation NDCG@10
    budget_min: float | None = None  # wall-clock minutes for training and validation together
    seed: int = 0
    device: str | None = None  # None: CUDA when available, else CPU
    eval_batch_size: int = 512
    progress: bool = True

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 1 or self.patience < 1 or not self.lr > 0:
            raise ValueError(f"epochs, batch_size, patience and lr must be positive, got {self}")
        if self.optimizer not in ("adam", "adagrad") or self.weight_decay < 0:
            raise ValueError(f"optimizer must be 'adam' or 'adagrad' and weight_decay >= 0, got {self}")
        if self.budget_min is not None and not self.budget_min > 0:
            raise ValueError(f"budget_min must be positive or None, got {self.budget_min}")


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


def train(model: nn.Module, steps: EpochSteps | Examples, validation: Cases | None, config: TrainConfig,
          *, n_items: int | None = None, max_len: int | None = None,
          clock: Callable[[], float] = time.monotonic) -> TrainResult:
    """Train ``model`` in place and leave it holding its best weights (the last ones without validation).

    ``steps`` is the epoch strategy; ``Examples`` stand for ``PaddedBatches(examples)``. ``n_items``
    and ``max_len`` size the validation adapter; they default to ``model.config``'s. ``clock`` is a
    seam for tests of the time budget.
    """
    epoch_steps = PaddedBatches(steps) if isinstance(steps, Examples) else steps
    seed_everything(config.seed)
    device = pick_device(config.device)
    model.to(device)
    model_config = getattr(model, "config", None)
    n_items = n_items if n_items is not None else model_config.n_items  # type: ignore[union-attr]
    max_len = max_len if max_len is not None else model_config.max_len  # type: ignore[union-attr]
    scorer = TorchSequenceRecommender.from_module(model, n_items, max_len, name=type(model).__name__.lower(),
                                                  device=device, batch_size=config.eval_batch_size)
    optimizer = make_optimizer(model, config)
    rng = np.random.default_rng(config.seed)
    start = clock()
    deadline = start + config.budget_min * 60 if config.budget_min is not None else float("inf")
    result = TrainResult()
    best_score, best_state, stale = -np.inf, copy.deepcopy(model.state_dict()), 0
    n_steps = epoch_steps.n_steps(config.batch_size)

    for epoch in range(1, config.epochs + 1):
        model.train()
        total, done = 0.0, 0
        bar = tqdm(epoch_steps.losses(model, config.batch_size, device, rng), total=n_steps,
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

        val: dict[str, float] = {}
        if validation is not None and len(validation):
            val = evaluate(scorer, validation, cutoffs=(10,), batch_size=config.eval_batch_size, progress=False)
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


def fit_for_epochs(model: nn.Module, sequences: list, *, epochs: int, seed: int,  # type: ignore[type-arg]
                   name: str) -> TorchSequenceRecommender:
    """Train a padded-batch model (SASRec, BERT4Rec) on ``sequences`` for a fixed number of epochs and
    wrap it as a ``Recommender``: what their registry classes do, since no validation cases reach
    ``fit`` (``streamrec train`` is the one that early-stops on validation)."""
    config = model.config  # type: ignore[union-attr]
    train(model, sequence_examples(sequences, config.max_len), None,
          TrainConfig(epochs=epochs, seed=seed, progress=False))
    return TorchSequenceRecommender.from_module(model, config.n_items, config.max_len, name=name)
