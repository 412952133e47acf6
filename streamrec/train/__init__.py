"""Training for torch models: examples and batches, one loop with per-model epoch steps, curves, and
the adapter that makes a trained module (or an ONNX session) a ``Recommender``.

``streamrec.train.recommenders`` (the sequence models as ``Recommender``s that train themselves, for
``streamrec.eval.factory``) and ``streamrec.train.curves`` (matplotlib) are imported on their own;
``streamrec train`` itself, which also exports and publishes, is ``streamrec.offline.train_job``."""

from __future__ import annotations

from streamrec.train.adapter import ScoreFn, TorchSequenceRecommender, module_score_fn
from streamrec.train.batches import Examples, batches, left_pad, sequence_examples
from streamrec.train.loop import (
    EpochRecord,
    EpochSteps,
    PaddedBatches,
    TrainConfig,
    TrainResult,
    Validate,
    make_optimizer,
    pick_device,
    run_loop,
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
    "Validate",
    "batches",
    "left_pad",
    "make_optimizer",
    "module_score_fn",
    "pick_device",
    "run_loop",
    "seed_everything",
    "sequence_examples",
    "train",
]
