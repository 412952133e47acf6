"""Training for torch sequence models: examples and batches, one loop with per-model epoch steps,
curves, and the adapter that makes a trained module (or an ONNX session) a ``Recommender``.

``streamrec.train.jobs`` (what ``streamrec train`` does) and ``streamrec.train.curves`` (matplotlib)
are imported on their own."""

from __future__ import annotations

from streamrec.train.adapter import ScoreFn, TorchSequenceRecommender, module_score_fn
from streamrec.train.batches import Examples, batches, left_pad, sequence_examples
from streamrec.train.loop import (
    EpochRecord,
    EpochSteps,
    PaddedBatches,
    TrainConfig,
    TrainResult,
    fit_for_epochs,
    make_optimizer,
    pick_device,
    seed_everything,
    train,
)

__all__ = [
    "EpochRecord",
    "EpochSteps",
    "Examples",
    "PaddedBatches",
    "ScoreFn",
    "TorchSequenceRecommender",
    "TrainConfig",
    "TrainResult",
    "batches",
    "fit_for_epochs",
    "left_pad",
    "make_optimizer",
    "module_score_fn",
    "pick_device",
    "seed_everything",
    "sequence_examples",
    "train",
]
