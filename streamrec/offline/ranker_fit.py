"""Train the ranker on candidate lists: DeepFM by default, or Wide & Deep, DCN-v2 or DLRM (``RankerConfig.arch``).

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

The epochs run in the shared training loop (``streamrec.train.loop.run_loop``: best state,
patience, time budget); what is the ranker's own is one epoch's steps (``ListBatches``) and the
held-out list NDCG@10 it validates on.

Every architecture gets the same lists, negatives, held-out cases and seed, and the same shared
fields (``streamrec.models.deepfm.RankerConfig``: field sizes, ``d_embed``, ``hidden``, ``dropout``,
the dense statistics). Its own fields keep their defaults (``NETWORKS``), except Wide & Deep's crosses,
which depend on the feature layout (``streamrec.rank.features.wide_crosses``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, get_args

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from streamrec.errors import ConfigError
from streamrec.eval import metrics
from streamrec.models.dcnv2 import DCNv2, DCNv2Config
from streamrec.models.deepfm import DeepFM, DeepFMConfig, RankerModule, RankLoss
from streamrec.models.dlrm import DLRM, DLRMConfig
from streamrec.models.widedeep import WideDeep, WideDeepConfig
from streamrec.rank.features import Features, SessionContext, build_features, dense_names, sparse_sizes, wide_crosses
from streamrec.rank.pipeline import Pipeline
from streamrec.registry import RANKER_ARCHS, RankerArch
from streamrec.train.loop import METRIC, TrainConfig, run_loop, seed_everything

__all__ = ["NETWORKS", "ListBatches", "Lists", "RankerConfig", "RankerFit", "build_lists", "fit_ranker", "list_ranks"]

logger = logging.getLogger(__name__)

#: Each architecture's network and its config class (a ``streamrec.models.deepfm.RankerConfig``).
NETWORKS: dict[str, tuple[Callable[[Any], RankerModule], type]] = {
    "deepfm": (DeepFM, DeepFMConfig), "widedeep": (WideDeep, WideDeepConfig), "dcnv2": (DCNv2, DCNv2Config),
    "dlrm": (DLRM, DLRMConfig),
}


@dataclass(frozen=True, kw_only=True)
class RankerConfig:
    """The ranker's lists and network, and its training settings (see ``train_config``)."""

    arch: RankerArch = "deepfm"  # the network (NETWORKS), its own fields at their defaults
    loss: RankLoss = "listwise"
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
    budget_s: float | None = None  # wall-clock seconds for training and held-out validation together

    def __post_init__(self) -> None:
        if self.arch not in RANKER_ARCHS:
            raise ConfigError(f"arch must be one of {', '.join(map(repr, RANKER_ARCHS))}, got {self.arch!r}")
        if self.loss not in get_args(RankLoss):
            raise ConfigError(f"loss must be one of {', '.join(map(repr, get_args(RankLoss)))}, got {self.loss!r}")
        if self.list_size < 2:
            raise ConfigError(f"list_size must be at least 2 (the target and a negative), got {self.list_size}")
        if self.batch_lists < 1:
            raise ConfigError(f"batch_lists must be at least 1, got {self.batch_lists}")
        if not 0 < self.holdout < 1:
            raise ConfigError(f"holdout must lie in (0, 1), got {self.holdout}")
        self.train_config()  # the loop's settings check themselves: epochs, lr, patience, budget_s

    def train_config(self, *, progress: bool = False) -> TrainConfig:
        """The shared loop's settings: a step takes ``batch_lists`` lists. On the CPU, where the ranker has
        always trained: the network is small and its lists are numpy arrays in memory."""
        return TrainConfig(epochs=self.epochs, batch_size=self.batch_lists, lr=self.lr, weight_decay=self.weight_decay,
                           patience=self.patience, budget_s=self.budget_s, seed=self.seed, device="cpu",
                           progress=progress)


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
    model: RankerModule
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = 0
    best_ndcg: float = float("nan")
    stopped: str = ""
    arch: str = "deepfm"  # RankerConfig.arch
    seconds: float = float("nan")  # wall-clock seconds of the fit (training and held-out validation)


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
    """A ``config.arch`` network trained on ``lists`` (built by ``build_lists`` for ``pipeline``), best held-out
    epoch kept."""
    started = time.monotonic()
    order = np.random.default_rng(config.seed).permutation(len(lists))
    n_hold = max(1, round(config.holdout * len(lists)))
    hold, train_idx = order[:n_hold], order[n_hold:]
    train_idx = train_idx[lists.target_col[train_idx] >= 0]
    if len(train_idx) == 0:
        raise ConfigError("no training list has its target among the candidates; raise n_per_source")

    real = lists.features.dense[lists.mask]  # (rows, D)
    if len(dense_names(pipeline.sources)) != real.shape[1]:
        raise ValueError("feature layout and pipeline sources disagree")
    seed_everything(config.seed)  # the initial weights; the loop seeds again for dropout and sampling
    network, network_config = NETWORKS[config.arch]
    own = {"crosses": wide_crosses(pipeline.sources)} if config.arch == "widedeep" else {}
    model = network(network_config(
        sparse_sizes=sparse_sizes(pipeline.table, len(pipeline.sources)), n_multi=lists.features.multi.shape[-1],
        n_dense=real.shape[1], d_embed=config.d_embed, hidden=config.hidden, dropout=config.dropout,
        dense_mean=tuple(float(v) for v in real.mean(axis=0)),
        dense_std=tuple(float(v) for v in np.maximum(real.std(axis=0), 1e-6)), **own,
    ))

    def validate() -> dict[str, float]:
        return {METRIC: _held_out_ndcg(model, lists, hold)}

    result = run_loop(model, ListBatches(lists, train_idx, config.list_size, config.loss), validate,
                      config.train_config(progress=progress))
    history = [{"epoch": r.epoch, "loss": r.loss, "holdout_ndcg10": r.val[METRIC], "seconds": r.seconds}
               for r in result.history]
    logger.info("ranker %s: best epoch %d of %d (stopped: %s), held-out list NDCG@10 %.4f", config.arch,
                result.best_epoch, len(history), result.stopped, result.best_metrics.get(METRIC, float("nan")))
    return RankerFit(model, history, result.best_epoch, result.best_metrics.get(METRIC, float("nan")), result.stopped,
                     config.arch, time.monotonic() - started)


@dataclass(frozen=True, eq=False)
class ListBatches:
    """``EpochSteps`` for the ranker: each epoch, every training case's target with ``list_size - 1``
    negatives drawn afresh from its other candidates, in shuffled order, a step's worth at a time."""

    lists: Lists
    cases: np.ndarray  # int64: the training cases, each with its target among its candidates
    list_size: int
    loss: RankLoss

    def n_steps(self, batch_size: int) -> int:
        return -(-len(self.cases) // batch_size)

    def losses(self, model: nn.Module, batch_size: int, device: torch.device,
               rng: np.random.Generator) -> Iterator[torch.Tensor]:
        rows = _sample_rows(self.lists, rng.permutation(self.cases), self.list_size, rng)  # (L, list_size) columns
        features = (self.lists.features.sparse, self.lists.features.multi, self.lists.features.dense)
        for lo in range(0, len(rows.case), batch_size):
            case, cols = rows.case[lo:lo + batch_size], rows.cols[lo:lo + batch_size]
            sparse, multi, dense = (torch.from_numpy(a[case[:, None], cols].reshape(-1, a.shape[-1])).to(device)
                                    for a in features)
            labels = (cols == self.lists.target_col[case][:, None]).reshape(-1).astype(np.float32)  # (N,)
            _, loss = model(sparse, multi, dense, torch.from_numpy(labels).to(device), list_size=self.list_size,
                            loss=self.loss)
            yield loss


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
def _held_out_ndcg(model: RankerModule, lists: Lists, cases: np.ndarray, batch: int = 256) -> float:
    model.eval()
    device = next(model.parameters()).device
    ranks = []
    for lo in range(0, len(cases), batch):
        idx = cases[lo:lo + batch]
        B, C = lists.mask[idx].shape
        flat = [torch.from_numpy(a[idx].reshape(B * C, -1)).to(device) for a in
                (lists.features.sparse, lists.features.multi, lists.features.dense)]
        scores = model.score(*flat).cpu().numpy().reshape(B, C)
        ranks.append(list_ranks(np.where(lists.mask[idx], scores, -np.inf), lists.mask[idx], lists.target_col[idx]))
    return metrics.ndcg(np.concatenate(ranks), 10) if ranks else float("nan")
