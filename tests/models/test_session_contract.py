"""The retrieval contract of the sequence models: ``session(seq) @ item_vectors().T`` is ``score(seq)``,
so that an index over the item vectors finds what the scores rank first."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from streamrec.models.bert4rec import Bert4Rec, Bert4RecConfig
from streamrec.models.gru4rec import GRU4Rec, GRU4RecConfig
from streamrec.models.sasrec import SASRec, SASRecConfig
from tests.models.helpers import N_ITEMS


def _models() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    models: dict[str, nn.Module] = {
        "sasrec": SASRec(SASRecConfig(n_items=N_ITEMS, max_len=8)),
        "gru4rec": GRU4Rec(GRU4RecConfig(n_items=N_ITEMS, max_len=8, hidden_size=16)),
        "bert4rec": Bert4Rec(Bert4RecConfig(n_items=N_ITEMS, max_len=8)),
    }
    with torch.no_grad():  # biases away from their zero initialisation, so that they count
        models["gru4rec"].out_bias.weight.normal_()  # type: ignore[union-attr,operator]
        models["bert4rec"].out_bias.normal_()  # type: ignore[union-attr,operator]
    return {name: model.eval() for name, model in models.items()}


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "bert4rec"])
def test_the_session_times_the_item_vectors_is_the_score(name: str) -> None:
    model = _models()[name]
    seq = torch.tensor([[0, 0, 0, 0, 0], [0, 0, 1, 2, 3], [4, 5, 6, 7, 8]])  # an empty session too
    with torch.no_grad():
        session, items, score = model.session(seq), model.item_vectors(), model.score(seq)  # type: ignore[operator]
    assert items.shape[0] == N_ITEMS + 1 and session.shape == (3, items.shape[1])
    torch.testing.assert_close(session @ items.T, score, rtol=1e-5, atol=1e-5)
    assert (score[:, 1:].argsort(dim=1, descending=True)[:, :5] ==
            (session @ items.T)[:, 1:].argsort(dim=1, descending=True)[:, :5]).all()
