"""The ranker's training: candidate lists, list ranks, and the shared loop's best state, patience and
budget on a tiny planted problem (one source always proposes the true next item first, two are noise)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch

from streamrec.cli import main
from streamrec.errors import ConfigError
from streamrec.eval import metrics
from streamrec.models.base import TrainData
from streamrec.models.deepfm import DeepFM
from streamrec.offline.ranker_fit import Lists, RankerConfig, build_lists, fit_ranker, list_ranks
from streamrec.rank.features import ItemTable
from streamrec.rank.pipeline import Pipeline
from tests.models.helpers import tiny_items

N_ITEMS = 30
SMALL = {"list_size": 8, "lr": 5e-3, "hidden": (32,), "d_embed": 8}  # a network the size of the problem


def next_of(item: int) -> int:
    return item % N_ITEMS + 1


@dataclass
class Planted:
    """Seeded random scores per history; with ``good`` the true next item is scored above all of them."""

    name: str
    good: bool

    def fit(self, data: TrainData) -> Planted:
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        out = np.empty((len(histories), N_ITEMS + 1), dtype=np.float32)
        for r, h in enumerate(histories):
            last = int(h[-1])
            row = np.random.default_rng([last, len(self.name)]).random(N_ITEMS + 1).astype(np.float32)
            if self.good:
                row[next_of(last)] = 2.0
            out[r] = row
        out[:, 0] = -np.inf
        return out


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    rng = np.random.default_rng(1)
    sequences = [rng.integers(1, N_ITEMS + 1, 6) for _ in range(40)]
    data = TrainData(sequences, [np.arange(6, dtype=np.int64) * 86_400] * 40, N_ITEMS, tiny_items(N_ITEMS))
    sources = {"good": Planted("good", True), "noise": Planted("noise", False), "noise2": Planted("noise2", False)}
    return Pipeline(sources, ItemTable.build(data), {"good": 3, "noise": 6, "noise2": 6})


def cases(n: int, seed: int) -> tuple[list[np.ndarray], np.ndarray]:
    """One-item histories, so the target (the item after it) is never among the excluded seen items."""
    histories = [np.array([i]) for i in np.random.default_rng(seed).integers(1, N_ITEMS + 1, size=n)]
    return histories, np.array([next_of(int(h[-1])) for h in histories])


def lists_of(pipeline: Pipeline, n: int, seed: int) -> Lists:
    histories, targets = cases(n, seed)
    return build_lists(pipeline, pipeline.source_scores(histories), histories, targets)


def list_ndcg(score: Callable[[Lists], np.ndarray], lists: Lists) -> float:
    scores = np.where(lists.mask, score(lists), -np.inf)
    return metrics.ndcg(list_ranks(scores, lists.mask, lists.target_col), 10)


def by_model(model: DeepFM) -> Callable[[Lists], np.ndarray]:
    @torch.no_grad()
    def score(lists: Lists) -> np.ndarray:
        B, C = lists.mask.shape
        flat = (torch.from_numpy(a.reshape(B * C, -1)) for a in
                (lists.features.sparse, lists.features.multi, lists.features.dense))
        return model.eval().score(*flat).numpy().reshape(B, C)

    return score


def fit(pipeline: Pipeline, **config: Any) -> Any:
    return fit_ranker(lists_of(pipeline, 300, seed=1), pipeline, RankerConfig(**{**SMALL, **config}), progress=False)


# ---------------------------------------------------------------- lists and ranks


def test_lists_hold_every_case_with_its_target_column_and_padding_masked(pipeline: Pipeline) -> None:
    lists = lists_of(pipeline, 20, seed=0)
    B, C = lists.mask.shape
    assert len(lists) == B == 20 and lists.features.sparse.shape[:2] == lists.features.dense.shape[:2] == (B, C)
    assert lists.recall() == 1.0  # the good source proposes every target
    _, targets = cases(20, seed=0)
    items = lists.features.sparse[..., 0]  # the first sparse field is the item itself
    np.testing.assert_array_equal(items[np.arange(B), lists.target_col], targets)
    assert not lists.mask[items == 0].any() and lists.mask.sum(axis=1).min() >= 6

    histories, _ = cases(20, seed=0)
    unseen = build_lists(pipeline, pipeline.source_scores(histories), histories, np.array([h[0] for h in histories]))
    assert (unseen.target_col == -1).all() and unseen.recall() == 0.0  # a seen item is never a candidate


def test_list_ranks_are_pessimistic_among_real_candidates_and_huge_for_a_miss() -> None:
    scores = np.array([[3.0, 1.0, 2.0, 9.0], [1.0, 1.0, 0.0, 0.0], [5.0, 4.0, 0.0, 0.0]])
    mask = np.array([[True, True, True, False], [True, True, False, False], [True, True, False, False]])
    ranks = list_ranks(scores, mask, np.array([2, 1, -1]))
    assert ranks[:2].tolist() == [2, 2] and ranks[2] > 10**9  # padding (9.0) does not count; ties count against


# ---------------------------------------------------------------- training through the shared loop


def test_the_ranker_learns_to_rank_held_out_lists(pipeline: Pipeline) -> None:
    result = fit(pipeline, epochs=8, patience=8)
    test = lists_of(pipeline, 200, seed=2)
    torch.manual_seed(0)
    untrained = list_ndcg(by_model(DeepFM(result.model.config)), test)
    chance = list_ndcg(lambda lists: np.random.default_rng(0).random(lists.mask.shape), test)
    learned = list_ndcg(by_model(result.model), test)
    assert learned > 0.9 and learned > untrained + 0.3 and learned > chance + 0.3, (learned, untrained, chance)
    assert result.history[-1]["loss"] < result.history[0]["loss"]
    held_out = [h["holdout_ndcg10"] for h in result.history]
    assert result.best_ndcg == max(held_out) == held_out[result.best_epoch - 1]
    assert result.stopped == "epochs" and [h["epoch"] for h in result.history] == list(range(1, 9))


def test_training_stops_after_patience_epochs_without_a_better_held_out_score(pipeline: Pipeline) -> None:
    result = fit(pipeline, lr=1e-12, epochs=30, patience=2)  # steps too small to move a ranking
    assert result.stopped == "patience" and len(result.history) == 3 and result.best_epoch == 1
    assert len({h["holdout_ndcg10"] for h in result.history}) == 1


def test_the_time_budget_cuts_training_short(pipeline: Pipeline) -> None:
    result = fit(pipeline, epochs=50, patience=50, budget_s=1e-6)  # spent after the first step
    assert result.stopped == "budget" and len(result.history) == result.best_epoch == 1
    assert np.isfinite(result.best_ndcg)  # the cut epoch is still validated


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize(("change", "match"), [
    ({"epochs": 0}, "epochs"), ({"loss": "pairwise"}, "loss"), ({"list_size": 1}, "list_size"),
    ({"holdout": 1.0}, "holdout"), ({"batch_lists": 0}, "batch_lists"), ({"budget_s": 0.0}, "budget_s"),
    ({"lr": 0.0}, "lr"), ({"arch": "xgboost"}, "arch must be one of"),
])
def test_bad_settings_are_config_errors(change: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        RankerConfig(**change)


def test_the_cli_says_what_is_wrong_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train-ranker", "--dataset", "ml-100k", "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "epochs must be at least 1, got 0" in err
