"""A retrain publishes its sequence models with the contract of the release it replaces."""

from __future__ import annotations

from pathlib import Path

import torch

from streamrec.export import publish, session_graph
from streamrec.models.sasrec import SASRec, SASRecConfig
from streamrec.retrain.releases import served_contract

N_ITEMS, MAX_LEN = 30, 8
VOCAB = ["<pad>", *(f"m{i}" for i in range(1, N_ITEMS + 1))]


def _publish(registry: Path, **graph: object) -> str:
    torch.manual_seed(0)
    config = SASRecConfig(n_items=N_ITEMS, max_len=MAX_LEN, d_model=16)
    return publish(SASRec(config), config, name="sasrec", vocab=VOCAB, dataset="synthetic", protocol={},
                   metrics={}, registry=registry, **graph).name  # type: ignore[arg-type]


def test_the_contract_of_the_served_sequence_models_is_kept(tmp_path: Path) -> None:
    scores = _publish(tmp_path / "a")
    session = _publish(tmp_path / "b", graph=session_graph(MAX_LEN))
    assert served_contract(tmp_path / "a", {"sasrec": scores, "deepfm": "v"}, ("sasrec",)) == "scores"
    assert served_contract(tmp_path / "b", {"sasrec": session, "deepfm": "v"}, ("sasrec", "gru4rec")) == "session"
    assert served_contract(tmp_path / "b", {"sasrec": session}, ("gru4rec",)) == "scores"  # not retrained here
    assert served_contract(tmp_path / "c", {}, ("sasrec",)) == "scores"  # no release yet
