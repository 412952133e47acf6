"""Train GRU4Rec: epochs of session-parallel steps, top to bottom."""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
from tqdm import tqdm

from streamrec.models.base import TrainData
from streamrec.models.gru4rec import GRU4Rec, GRU4RecConfig
from streamrec.train.gru4rec_iterator import NegativeSampler, session_parallel_batches

__all__ = ["fit_gru4rec"]

logger = logging.getLogger(__name__)


def _session_order(data: TrainData) -> np.ndarray:
    """Sessions by start time, as GRU4Rec feeds them (ties keep their order)."""
    starts = np.array([t[0] if len(t) else 0 for t in data.timestamps], dtype=np.int64)
    return np.argsort(starts, kind="stable")


def _item_counts(data: TrainData) -> np.ndarray:
    counts = np.zeros(data.n_items + 1, dtype=np.int64)
    if len(data.sequences):
        counts += np.bincount(np.concatenate(data.sequences).astype(np.int64), minlength=data.n_items + 1)
    return counts


def _make_optimizer(model: GRU4Rec, config: GRU4RecConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adagrad":
        return torch.optim.Adagrad(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def fit_gru4rec(
    data: TrainData,
    config: GRU4RecConfig,
    *,
    time_budget_s: float | None = None,
    progress: bool = True,
) -> tuple[GRU4Rec, list[dict[str, float]]]:
    """Fit a fresh GRU4Rec on ``data.sequences`` (sessions) and return it in eval mode, with one
    history row per epoch: ``epoch``, ``loss`` (mean over steps), ``steps``, ``events``, ``seconds``.

    Seeded by ``config.seed``; runs on CUDA when available. With ``time_budget_s`` training stops
    at the first step past the budget (the last row then covers a partial epoch).
    """
    if config.n_items != data.n_items:
        raise ValueError(f"config.n_items is {config.n_items} but the data has {data.n_items} items")
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = GRU4Rec(config).to(device)
    optimizer = _make_optimizer(model, config)
    sampler = NegativeSampler(_item_counts(data), config.sample_alpha, config.n_sample, config.sample_cache, rng)
    order = _session_order(data)
    start = time.perf_counter()
    history: list[dict[str, float]] = []
    hidden = model.init_hidden(0, device)

    def reset(keep: np.ndarray, fresh: np.ndarray) -> None:
        nonlocal hidden
        if len(keep) == 0:  # first step of the epoch: every lane fresh
            hidden = model.init_hidden(len(fresh), device)
            return
        hidden = hidden.detach()[:, torch.from_numpy(keep).to(device)]  # (L, B', H)
        hidden[:, torch.from_numpy(fresh).to(device)] = 0.0

    out_of_time = False
    for epoch in range(1, config.epochs + 1):
        model.train()
        epoch_start = time.perf_counter()
        total, steps, events = 0.0, 0, 0
        batches = session_parallel_batches(data.sequences, config.batch_size, reset, order)
        bar = tqdm(batches, desc=f"gru4rec epoch {epoch}", unit=" step", leave=False,
                   disable=None if progress else True)
        for inputs, targets in bar:
            x = torch.from_numpy(inputs).to(device)
            y = torch.from_numpy(targets).to(device)
            negatives = torch.from_numpy(sampler()).to(device) if config.n_sample > 0 else None
            hidden = hidden.detach()  # the official code backpropagates one step only
            _, loss, hidden = model(x, hidden, y, negatives)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            steps += 1
            events += len(inputs)
            if time_budget_s is not None and time.perf_counter() - start > time_budget_s:
                out_of_time = True
                break
        row = {"epoch": float(epoch), "loss": total / max(steps, 1), "steps": float(steps),
               "events": float(events), "seconds": time.perf_counter() - epoch_start}
        history.append(row)
        logger.info("gru4rec epoch %d: loss %.4f over %d steps in %.1fs", epoch, row["loss"], steps, row["seconds"])
        if out_of_time:
            logger.info("gru4rec: time budget of %.0fs spent after %d epochs", time_budget_s, epoch)
            break
    model.eval()
    return model, history
