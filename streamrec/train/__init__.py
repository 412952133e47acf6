"""Training for torch sequence models: examples and batches, one loop, curves, and the adapter that
makes a trained module (or an ONNX session) a ``Recommender``."""

from __future__ import annotations

from streamrec.train.adapter import ScoreFn, TorchSequenceRecommender, module_score_fn
from streamrec.train.batches import Examples, batches, left_pad, sequence_examples
from streamrec.train.loop import EpochRecord, TrainConfig, TrainResult, pick_device, seed_everything, train

__all__ = [
    "EpochRecord",
    "Examples",
    "ScoreFn",
    "TorchSequenceRecommender",
    "TrainConfig",
    "TrainResult",
    "batches",
    "left_pad",
    "module_score_fn",
    "pick_device",
    "seed_everything",
    "sequence_examples",
    "train",
]
