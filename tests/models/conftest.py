"""The models' fixture: ml-100k with a leave-last-out hold-out (``HoldOut`` in ``tests.models.helpers``
says how it is scored). ``make_data`` lives in ``tests/conftest.py``: the ranking tests use it too."""

from __future__ import annotations

import numpy as np
import pytest

from streamrec.data.movielens import load
from streamrec.models.base import TrainData
from tests.models.helpers import HoldOut


@pytest.fixture(scope="session")
def ml100k_holdout(tmp_path_factory: pytest.TempPathFactory) -> HoldOut:
    ml = load("ml-100k", tmp_path_factory.mktemp("data"))
    inter = ml.interactions  # sorted by time, ties in file order; a stable group-by keeps that order
    seqs, stamps, targets = [], [], []
    for _, user in inter.groupby("user_id", sort=True):
        items = user["item_idx"].to_numpy(np.int32)
        seqs.append(items[:-1])
        stamps.append(user["timestamp"].to_numpy(np.int64)[:-1])
        targets.append(items[-1])
    train = TrainData(seqs, stamps, ml.n_items, ml.items)
    return HoldOut(train, seqs, np.array(targets, dtype=np.int64))
