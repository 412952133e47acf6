from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from streamrec.eval import Cases, evaluate
from streamrec.models.sasrec import SASRec, SASRecConfig
from streamrec.train import (
    TorchSequenceRecommender,
    TrainConfig,
    batches,
    left_pad,
    make_optimizer,
    seed_everything,
    sequence_examples,
    train,
)
from streamrec.train.curves import plot_curves

N_ITEMS = 30


def sequences(n: int = 24, length: int = 10, seed: int = 0) -> list[np.ndarray]:
    starts = np.random.default_rng(seed).integers(0, N_ITEMS, size=n)
    return [((s + np.arange(length)) % N_ITEMS + 1).astype(np.int64) for s in starts]


def cases(seqs: list[np.ndarray]) -> Cases:
    n = len(seqs)
    return Cases([s[:-1] for s in seqs], [np.arange(len(s) - 1) for s in seqs], np.array([s[-1] for s in seqs]),
                 np.zeros(n, dtype=np.int64), np.array([str(i) for i in range(n)], dtype=object), False)


# ---------------------------------------------------------------- batches and adapter


def test_examples_are_the_last_max_len_plus_one_items_shifted_by_one_and_left_padded() -> None:
    ex = sequence_examples([np.array([1, 2, 3, 4, 5, 6]), np.array([7, 8]), np.array([9])], max_len=4)
    np.testing.assert_array_equal(ex.inputs, [[2, 3, 4, 5], [0, 0, 0, 7]])
    np.testing.assert_array_equal(ex.targets, [[3, 4, 5, 6], [0, 0, 0, 8]])
    got = list(batches(ex, 1, np.random.default_rng(0)))
    assert len(got) == 2 and sorted(int(b[1][0, -1]) for b in got) == [6, 8]
    np.testing.assert_array_equal(left_pad([np.array([], dtype=np.int64)], 2), [[0, 0]])


def test_windows_make_every_transition_a_target_once_with_at_most_max_len_inputs() -> None:
    from streamrec.train.batches import window_examples

    ex = window_examples([np.arange(1, 11), np.array([7, 8]), np.array([9])], max_len=4)
    np.testing.assert_array_equal(ex.inputs, [[6, 7, 8, 9], [2, 3, 4, 5], [0, 0, 0, 1], [0, 0, 0, 7]])
    np.testing.assert_array_equal(ex.targets, [[7, 8, 9, 10], [3, 4, 5, 6], [0, 0, 0, 2], [0, 0, 0, 8]])
    pairs = sorted((int(i), int(t)) for row_i, row_t in zip(ex.inputs, ex.targets, strict=True)
                   for i, t in zip(row_i, row_t, strict=True) if t)
    assert pairs == sorted([(k, k + 1) for k in range(1, 10)] + [(7, 8)])


def test_the_adapter_drops_unknown_ids_keeps_the_last_max_len_and_masks_padding() -> None:
    seen: list[np.ndarray] = []

    def score_fn(seq: np.ndarray) -> np.ndarray:
        seen.append(seq)
        return np.ones((len(seq), N_ITEMS + 1), dtype=np.float64)

    rec = TorchSequenceRecommender(score_fn, N_ITEMS, max_len=3, batch_size=2)
    scores = rec.score([np.array([1, 0, 2, 99, 3, 4]), np.array([5]), np.array([], dtype=np.int64)])
    assert scores.shape == (3, N_ITEMS + 1) and scores.dtype == np.float32 and np.isneginf(scores[:, 0]).all()
    np.testing.assert_array_equal(seen[0], [[2, 3, 4], [0, 0, 5]])
    np.testing.assert_array_equal(seen[1], [[0]])


# ---------------------------------------------------------------- the loop


@dataclass
class ConstantConfig:
    n_items: int = N_ITEMS
    max_len: int = 5


class Constant(nn.Module):
    """Learns nothing the ranking can see: every validation is equally bad, so patience runs out."""

    def __init__(self) -> None:
        super().__init__()
        self.config = ConstantConfig()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, seq: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        logits = self.score(seq)
        return logits, (self.bias - 1.0).pow(2).sum()

    def score(self, seq: torch.Tensor) -> torch.Tensor:
        return torch.zeros(seq.shape[0], N_ITEMS + 1) + self.bias


def test_early_stopping_after_patience_epochs_without_improvement() -> None:
    seqs = sequences()
    result = train(Constant(), sequence_examples(seqs, 5), cases(seqs),
                   TrainConfig(epochs=50, patience=3, progress=False))
    assert result.stopped == "patience" and len(result.history) == 4 and result.best_epoch == 1
    assert all("NDCG@10" in r.val for r in result.history)


def test_the_time_budget_cuts_training_short() -> None:
    ticks = iter(range(0, 10_000, 60))  # every call to the clock is a minute later
    seqs = sequences()
    result = train(Constant(), sequence_examples(seqs, 5), cases(seqs),
                   TrainConfig(epochs=50, batch_size=4, budget_s=150, progress=False), clock=lambda: next(ticks))
    assert result.stopped == "budget" and len(result.history) == 1


def test_training_is_deterministic_given_the_seed_and_keeps_the_best_state(tmp_path: Path) -> None:
    seqs = sequences()
    config = SASRecConfig(n_items=N_ITEMS, max_len=8, d_model=16)

    def run(seed: int) -> tuple[list[float], dict[str, torch.Tensor], SASRec, object]:
        seed_everything(seed)  # the weights' init; the loop seeds again for dropout and shuffling
        model = SASRec(config)
        result = train(model, sequence_examples(seqs, 8), cases(seqs),
                       TrainConfig(epochs=4, batch_size=8, seed=seed, progress=False))
        return [r.loss for r in result.history], model.state_dict(), model, result

    losses_a, state_a, model, result = run(1)
    losses_b, state_b, _, _ = run(1)
    losses_c, _, _, _ = run(2)
    assert losses_a == losses_b and losses_a != losses_c
    for key in state_a:
        torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=0)
    scorer = TorchSequenceRecommender.from_module(model, N_ITEMS, 8)
    again = evaluate(scorer, cases(seqs), cutoffs=(10,), progress=False)
    assert again["NDCG@10"] == pytest.approx(result.best_metrics["NDCG@10"])  # type: ignore[attr-defined]
    png = plot_curves(result.history, tmp_path / "curves.png", "test")  # type: ignore[attr-defined]
    assert png.read_bytes()[:4] == b"\x89PNG"


class CountedSteps:
    """An ``EpochSteps`` of its own: ``n`` steps per epoch, each pulling the bias towards 1."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.asked: list[int] = []

    def n_steps(self, batch_size: int) -> int:
        return self.n

    def losses(self, model: nn.Module, batch_size: int, device: torch.device,
               rng: np.random.Generator) -> Iterator[torch.Tensor]:
        for step in range(self.n):
            self.asked.append(step)
            yield model(torch.zeros(batch_size, 1, dtype=torch.int64, device=device))[1]


def test_the_loop_takes_any_epoch_strategy_and_its_optimizer_settings() -> None:
    steps = CountedSteps(5)
    model = Constant()
    result = train(model, steps, None, TrainConfig(epochs=3, lr=0.5, optimizer="adagrad", progress=False))
    assert [r.steps for r in result.history] == [5, 5, 5] and len(steps.asked) == 15
    assert result.stopped == "epochs" and result.best_epoch == 3  # without validation: the last weights
    assert result.history[-1].loss < result.history[0].loss and 0 < model.bias.item() <= 1
    assert isinstance(make_optimizer(model, TrainConfig(optimizer="adagrad")), torch.optim.Adagrad)
    with pytest.raises(ValueError, match="optimizer"):
        TrainConfig(optimizer="sgd")  # type: ignore[arg-type]


def test_the_budget_is_checked_after_every_step_of_any_strategy() -> None:
    ticks = iter(range(0, 10_000, 60))  # every call to the clock is a minute later
    steps = CountedSteps(100)
    result = train(Constant(), steps, None, TrainConfig(epochs=50, budget_s=150, progress=False),
                   clock=lambda: next(ticks))
    assert result.stopped == "budget" and [r.steps for r in result.history] == [3] and len(steps.asked) == 3
