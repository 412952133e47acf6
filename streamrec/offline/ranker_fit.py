"""Train the DeepFM ranker on candidate lists.

Where the lists come from matters more than the loss. The generators are fitted on the training
part, so on training sequences they have seen every target and their scores are overconfident;
a ranker trained there learns to trust whichever source memorises best. The lists are therefore
built on cases whose targets no generator saw: the protocol's validation part (under protocol A
each user's second-to-last item, under protocol B the sessions of the validation period). The
test part stays untouched. A share of those cases (``holdout``, split by case) early-stops the
ranker on list NDCG@10.

Each training list holds the true next item and ``list_size - 1`` hard negatives drawn afresh
every epoch from the other candidates of the same case; cases whose target is not among the
candidates cannot teach the ranker anything and are left out of training (but not of the
held-out metric, where they count as misses).
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from tqdm import tqdm

from streamrec.eval import metrics
from streamrec.models.deepfm import DeepFM, DeepFMConfig
from streamrec.rank.features import Features, SessionContext, build_features, dense_names, sparse_sizes
from streamrec.rank.pipeline import Pipeline

__all__ = ["Lists", "RankerConfig", "RankerFit", "build_lists", "fit_ranker", "list_ranks"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RankerConfig:
    loss: Literal["listwise", "bce"] = "listwise"
    list_size: int = 64  # rows per training list: the target plus hard negatives
    epochs: int = 40
    batch_lists: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 4  # epochs without a better held-out list NDCG@10
    holdout: float = 0.2
    d_embed: int = 16
    hidden: tuple[int, ...] = (128, 64)
    dropout: float = 0.1
    seed: int = 0
    budget_s: float | None = None

    def __post_init__(self) -> None:
        if self.loss not in ("listwise", "bce"):
            raise ValueError(f"loss must be 'listwise' or 'bce', got {self.loss!r}")
        if self.list_size < 2 or self.epochs < 1 or self.batch_lists < 1 or not 0 < self.holdout < 1:
            raise ValueError(f"need list_size >= 2, epochs >= 1, batch_lists >= 1, 0 < holdout < 1; got {self}")


@dataclass(frozen=True, eq=False)
class Lists:
    """Candidate lists of a set of cases, padded to the longest: features and the target's position."""

    features: Features  # arrays (B, C, ·)
    mask: np.ndarray  # bool (B, C)
    target_col: np.ndarray  # int64 (B,): the target's column, -1 when it is not a candidate

    def __len__(self) -> int:
        return len(self.target_col)

    def recall(self) -> float:
        return float((self.target_col >= 0).mean()) if len(self) else float("nan")


@dataclass
class RankerFit:
    model: DeepFM
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_ndcg: float = float("nan")
    stopped: str = ""


def build_lists(pipeline: Pipeline, scores: Mapping[str, np.ndarray], histories: Sequence[np.ndarray],
                targets: np.ndarray, contexts: Sequence[SessionContext] | None = None, *,
                batch_size: int = 512, progress: bool = False) -> Lists:
    """Candidates and features for every case, from the sources' precomputed (N, V) ``scores``."""
    parts: list[tuple[Features, np.ndarray, np.ndarray]] = []
    for lo in tqdm(range(0, len(histories), batch_size), desc="candidate lists", unit=" batch", leave=False,
                   disable=None if progress else True):
        hi = min(lo + batch_size, len(histories))
        hist = histories[lo:hi]
        cands = pipeline.candidates({s: scores[s][lo:hi] for s in pipeline.sources}, hist)
        feats = build_features(cands, hist, pipeline.table, None if contexts is None else contexts[lo:hi])
        hit = cands.items == np.asarray(targets[lo:hi])[:, None]
        parts.append((feats, cands.mask, np.where(hit.any(axis=1), hit.argmax(axis=1), -1)))
    width = max((f.sparse.shape[1] for f, _, _ in parts), default=1)

    def pad(a: np.ndarray) -> np.ndarray:
        return np.pad(a, [(0, 0), (0, width - a.shape[1])] + [(0, 0)] * (a.ndim - 2))

    return Lists(
        Features(np.concatenate([pad(f.sparse) for f, _, _ in parts]), np.concatenate([pad(f.multi) for f, _, _ in parts]),
                 np.concatenate([pad(f.dense) for f, _, _ in parts])),
        np.concatenate([pad(m) for _, m, _ in parts]),
        np.concatenate([t for _, _, t in parts]),
    )


def list_ranks(scores: np.ndarray, mask: np.ndarray, target_col: np.ndarray) -> np.ndarray:
    """1-based pessimistic rank of each list's target among its candidates; a huge rank when absent."""
    miss = np.iinfo(np.int64).max // 2
    rows = np.arange(len(target_col))
    target = scores[rows, np.maximum(target_col, 0)]
    better = ((scores >= target[:, None]) & mask).sum(axis=1)  # counts the target itself
    return np.where(target_col >= 0, better, miss).astype(np.int64)


def fit_ranker(lists: Lists, pipeline: Pipeline, config: RankerConfig = RankerConfig(), *,
               progress: bool = True) -> RankerFit:
    """A DeepFM trained on ``lists`` (built by ``build_lists`` for ``pipeline``), best held-out epoch kept."""
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    order = rng.permutation(len(lists))
    n_hold = max(1, round(config.holdout * len(lists)))
    hold, train_idx = order[:n_hold], order[n_hold:]
    train_idx = train_idx[lists.target_col[train_idx] >= 0]
    if len(train_idx) == 0:
        raise ValueError("no training list has its target among the candidates; raise n_per_source")

    real = lists.features.dense[lists.mask]  # (rows, D)
    model = DeepFM(DeepFMConfig(
        sparse_sizes=sparse_sizes(pipeline.table, len(pipeline.sources)), n_multi=lists.features.multi.shape[-1],
        n_dense=real.shape[1], d_embed=config.d_embed, hidden=config.hidden, dropout=config.dropout,
        dense_mean=tuple(float(v) for v in real.mean(axis=0)),
        dense_std=tuple(float(v) for v in np.maximum(real.std(axis=0), 1e-6)),
    ))
    if len(dense_names(pipeline.sources)) != real.shape[1]:
        raise ValueError("feature layout and pipeline sources disagree")
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    fit = RankerFit(model)
    best_state, stale = copy.deepcopy(model.state_dict()), 0
    start = time.monotonic()
    for epoch in range(1, config.epochs + 1):
        model.train()
        rows = _sample_rows(lists, rng.permutation(train_idx), config.list_size, rng)  # (L, list_size) columns
        total, steps = 0.0, 0
        batches = range(0, len(rows.case), config.batch_lists)
        for lo in tqdm(batches, desc=f"ranker epoch {epoch}", unit=" batch", leave=False,
                       disable=None if progress else True):
            case, cols = rows.case[lo:lo + config.batch_lists], rows.cols[lo:lo + config.batch_lists]
            sparse, multi, dense = (torch.from_numpy(a[case[:, None], cols].reshape(-1, a.shape[-1]))
                                    for a in (lists.features.sparse, lists.features.multi, lists.features.dense))
            labels = torch.from_numpy((cols == lists.target_col[case][:, None]).reshape(-1).astype(np.float32))
            _, loss = model(sparse, multi, dense, labels, list_size=config.list_size, loss=config.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, steps = total + float(loss.detach()), steps + 1
        ndcg = _held_out_ndcg(model, lists, hold)
        fit.history.append({"epoch": epoch, "loss": total / max(steps, 1), "holdout_ndcg10": ndcg,
                            "seconds": time.monotonic() - start})
        logger.info("ranker epoch %d loss %.4f held-out list NDCG@10 %.4f", epoch, total / max(steps, 1), ndcg)
        if progress:
            tqdm.write(f"ranker epoch {epoch:2d}  loss {total / max(steps, 1):.4f}  held-out NDCG@10 {ndcg:.4f}")
        if not ndcg <= fit.best_ndcg:  # also true for the first (nan) best
            fit.best_ndcg, fit.best_epoch, stale = ndcg, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            stale += 1
        if config.budget_s is not None and time.monotonic() - start > config.budget_s:
            fit.stopped = "budget"
            break
        if stale >= config.patience:
            fit.stopped = "patience"
            break
    else:
        fit.stopped = "epochs"
    model.load_state_dict(best_state)
    model.eval()
    return fit


@dataclass(frozen=True)
class _Rows:
    case: np.ndarray  # int64 (L,)
    cols: np.ndarray  # int64 (L, list_size): the target's column first, then sampled negatives


def _sample_rows(lists: Lists, cases: np.ndarray, size: int, rng: np.random.Generator) -> _Rows:
    """Per case: its target column plus ``size - 1`` negatives drawn from its other real candidates
    (with replacement only when it has fewer than that)."""
    cols = np.empty((len(cases), size), dtype=np.int64)
    for i, c in enumerate(cases):
        negatives = np.flatnonzero(lists.mask[c])
        negatives = negatives[negatives != lists.target_col[c]]
        replace = len(negatives) < size - 1
        cols[i, 0] = lists.target_col[c]
        cols[i, 1:] = rng.choice(negatives, size - 1, replace=replace) if len(negatives) else lists.target_col[c]
    return _Rows(cases, cols)


@torch.no_grad()
def _held_out_ndcg(model: DeepFM, lists: Lists, cases: np.ndarray, batch: int = 256) -> float:
    model.eval()
    ranks = []
    for lo in range(0, len(cases), batch):
        idx = cases[lo:lo + batch]
        B, C = lists.mask[idx].shape
        flat = [torch.from_numpy(a[idx].reshape(B * C, -1)) for a in
                (lists.features.sparse, lists.features.multi, lists.features.dense)]
        scores = model.score(*flat).numpy().reshape(B, C)
        ranks.append(list_ranks(np.where(lists.mask[idx], scores, -np.inf), lists.mask[idx], lists.target_col[idx]))
    return metrics.ndcg(np.concatenate(ranks), 10) if ranks else float("nan")
