import numpy as np
import pytest

from streamrec.errors import ConfigError
from streamrec.retrain.gate import GateConfig, VocabBridge, decide


class Fixed:
    """Scores item i of its own catalogue as i, and records the histories it was given."""

    name = "fixed"

    def __init__(self, n: int) -> None:
        self.n = n
        self.seen: list[list[int]] = []

    def score(self, histories):
        self.seen = [list(h) for h in histories]
        return np.tile(np.arange(self.n + 1, dtype=np.float32), (len(histories), 1))


def test_the_bridge_translates_histories_and_scores_by_item_id() -> None:
    old_vocab = ["<pad>", "a", "b", "c"]
    new_vocab = ["<pad>", "c", "new", "a", "b"]
    model = Fixed(3)
    scores = VocabBridge(model, old_vocab, new_vocab).score([np.array([3, 2, 1])])  # a, new, c
    assert model.seen == [[1, 3]]  # a -> 1, the unknown item skipped, c -> 3
    assert scores[0, 1] == 3 and scores[0, 3] == 1 and scores[0, 4] == 2  # c, a, b keep their own scores
    assert scores[0, 2] < scores[0, 3]  # the item the old model never saw ranks below all it knows
    assert scores[0, 0] == -np.inf


def test_a_history_of_unknown_items_only_gives_finite_or_floor_scores() -> None:
    class Nan(Fixed):
        def score(self, histories):
            return np.full((len(histories), self.n + 1), np.nan, dtype=np.float32)

    scores = VocabBridge(Nan(2), ["<pad>", "a", "b"], ["<pad>", "x", "a"]).score([np.array([1])])
    assert not np.isnan(scores).any()


@pytest.mark.parametrize(("new", "current", "promote"), [
    (0.100, 0.100, True), (0.096, 0.100, True), (0.094, 0.100, False), (0.2, 0.1, True)])
def test_the_gate_allows_a_relative_tolerance(new: float, current: float, promote: bool) -> None:
    decision = decide({"NDCG@10": new}, {"NDCG@10": current}, config=GateConfig(tolerance=0.05))
    assert decision.promote is promote
    assert "NDCG@10" in decision.reason


def test_failed_checks_reject_whatever_the_metric_and_nothing_current_promotes() -> None:
    assert not decide({"NDCG@10": 0.9}, {"NDCG@10": 0.1}, ["sasrec: ONNX differs"]).promote
    assert decide({"NDCG@10": 0.01}, None).promote
    assert not decide({}, None).promote
    with pytest.raises(ConfigError):
        GateConfig(tolerance=1.5)
