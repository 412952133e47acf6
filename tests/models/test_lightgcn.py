"""LightGCN: propagation, the served table, an exported graph without the graph, and ml-100k."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from streamrec.errors import ConfigError
from streamrec.models.lightgcn import LightGCN, LightGCNConfig
from streamrec.registry import MODEL, read_manifest
from streamrec.train import TrainConfig, seed_everything, train
from streamrec.train.graph import BPRTriples, interaction_matrix, normalised_adjacency
from tests.models.helpers import (
    N_ITEMS,
    HoldOut,
    assert_sequence_onnx_parity,
    cyclic_sequences,
    hit_rates_after_training,
)

SEQUENCES = [np.array([1, 2, 3]), np.array([2, 4]), np.array([4, 4, 5, 1])]


def test_propagation_is_the_mean_of_the_layers_of_the_normalised_graph() -> None:
    torch.manual_seed(0)
    model = LightGCN(LightGCNConfig(n_items=5, n_users=3, d_model=4, n_layers=2))
    model.set_graph(normalised_adjacency(interaction_matrix(SEQUENCES, 5)))
    a = np.zeros((9, 9))  # users 0-2, then items 0 (padding) to 5
    for u, seq in enumerate(SEQUENCES):
        for i in set(seq.tolist()):
            a[u, 3 + i] = a[3 + i, u] = 1
    degree = a.sum(1)
    norm = a / np.sqrt(np.outer(np.maximum(degree, 1), np.maximum(degree, 1)))
    x = torch.cat([model.user_emb.weight, model.item_emb.weight]).detach().double().numpy()
    want = (x + norm @ x + norm @ norm @ x) / 3
    users, items = model.propagate()
    np.testing.assert_allclose(users.detach().numpy(), want[:3], atol=1e-5)
    np.testing.assert_allclose(items.detach().numpy(), want[3:], atol=1e-5)


def test_eval_refreshes_the_served_table_and_scores_the_mean_of_the_sessions_items() -> None:
    torch.manual_seed(0)
    model = LightGCN(LightGCNConfig(n_items=5, n_users=3, d_model=4))
    model.set_graph(normalised_adjacency(interaction_matrix(SEQUENCES, 5)))
    assert (model.served == 0).all()
    model.eval()
    items = model.propagate()[1].detach()
    torch.testing.assert_close(model.served, items)
    with torch.no_grad():
        scores = model.score(torch.tensor([[0, 2, 4, 4]]))
    torch.testing.assert_close(scores[0], (items[2] + 2 * items[4]) / 3 @ items.T)


def test_bpr_triples_take_every_edge_once_per_epoch() -> None:
    r = interaction_matrix([*SEQUENCES, np.array([0, 9])], 5)  # padding and an unknown id are no edges
    assert r.shape == (4, 6) and r.nnz == 8 and r.max() == 1 and r[3].nnz == 0
    steps = BPRTriples(SEQUENCES, 5)
    seen = []

    class Recorder(torch.nn.Module):
        def set_graph(self, adjacency: torch.Tensor) -> None:
            assert adjacency.shape == (3 + 6, 3 + 6)

        def forward(self, users, pos, neg):  # type: ignore[no-untyped-def]
            seen.extend(zip(users.tolist(), pos.tolist(), strict=True))
            assert ((neg >= 1) & (neg <= 5)).all()
            return None, torch.zeros(())

    losses = list(steps.losses(Recorder(), 3, torch.device("cpu"), np.random.default_rng(0)))
    assert len(losses) == steps.n_steps(3) == 3
    assert sorted(seen) == sorted((u, i) for u, s in enumerate(SEQUENCES) for i in set(s.tolist()))


def test_a_bad_config_or_graph_is_refused() -> None:
    with pytest.raises(ConfigError, match="n_layers"):
        LightGCNConfig(n_items=5, n_layers=0)
    model = LightGCN(LightGCNConfig(n_items=5, n_users=2))
    with pytest.raises(ValueError, match="adjacency"):
        model.set_graph(normalised_adjacency(interaction_matrix(SEQUENCES, 5)))
    with pytest.raises(RuntimeError, match="no graph"):
        model.propagate()


def test_the_exported_graph_holds_no_graph_and_matches_torch(tmp_path: Path) -> None:
    sequences = cyclic_sequences(64, 20)
    config = LightGCNConfig(n_items=N_ITEMS, n_users=len(sequences), max_len=12, d_model=16)
    seed_everything(0)
    model = LightGCN(config)
    train(model, BPRTriples(sequences, N_ITEMS), None, TrainConfig(epochs=5, batch_size=256, lr=5e-3, progress=False))
    version = assert_sequence_onnx_parity(model, "lightgcn", tmp_path)
    ops = {node.op_type for node in onnx.load(str(version / MODEL)).graph.node}
    assert not any("Sparse" in op or "Scatter" in op for op in ops), ops
    assert read_manifest(version)["config"]["n_users"] == len(sequences)


@pytest.mark.integration
def test_beats_popularity_on_ml100k(ml100k_holdout: HoldOut) -> None:
    # 40 epochs of BPR in batches of 8,192 triples. Seen: HR@10 0.118 against MostPopular's 0.086, in about 10 s
    data = ml100k_holdout.train
    config = LightGCNConfig(n_items=data.n_items, n_users=len(data.sequences), max_len=50)
    seed_everything(0)
    hr, pop = hit_rates_after_training(LightGCN(config), BPRTriples(data.sequences, data.n_items), ml100k_holdout,
                                       epochs=40, batch_size=8192, lr=2e-2)
    assert hr > 1.2 * pop, (hr, pop)
