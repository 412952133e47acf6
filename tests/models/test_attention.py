"""What SASRec and BERT4Rec must both get right about padding: they share the attention block and
are fed the same left-padded batches, so one set of checks covers the two."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from streamrec.models.bert4rec import Bert4Rec, Bert4RecConfig
from streamrec.models.sasrec import SASRec, SASRecConfig

N_ITEMS = 40
MODELS = [pytest.param(lambda max_len: SASRec(SASRecConfig(n_items=N_ITEMS, max_len=max_len)), id="sasrec"),
          pytest.param(lambda max_len: Bert4Rec(Bert4RecConfig(n_items=N_ITEMS, max_len=max_len)), id="bert4rec")]


@pytest.mark.parametrize("build", MODELS)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_padded_rows_produce_no_nans(build, mode: str) -> None:  # type: ignore[no-untyped-def]
    model: nn.Module = build(6)
    model.train(mode == "train")
    seq = torch.tensor([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 1, 2], [1, 2, 3, 4, 5, 6]])
    targets = torch.tensor([[0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 2, 3], [2, 3, 4, 5, 6, 7]])
    logits, loss = model(seq, targets)
    assert torch.isfinite(logits).all() and loss is not None and torch.isfinite(loss)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(model.score(seq)).all()


@pytest.mark.parametrize("build", MODELS)
def test_left_padding_does_not_change_the_scores(build) -> None:  # type: ignore[no-untyped-def]
    model: nn.Module = build(8).eval()
    with torch.no_grad():
        short = model.score(torch.tensor([[5, 6, 7]]))
        padded = model.score(torch.tensor([[0, 0, 0, 0, 0, 5, 6, 7]]))
        in_batch = model.score(torch.tensor([[0, 0, 5, 6, 7], [1, 2, 3, 4, 5]]))[:1]
    torch.testing.assert_close(short, padded, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(short, in_batch, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("build", MODELS)
def test_the_served_last_position_equals_the_full_encoding(build) -> None:  # type: ignore[no-untyped-def]
    """``score`` runs the last block for the last position only; its keys still come from every position."""
    torch.manual_seed(0)
    model: nn.Module = build(8).eval()
    with torch.no_grad():
        for p in model.parameters():  # away from the near-zero start, so that every position matters
            p.normal_(0.0, 0.5)
        seq = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 3, 9, 4], [1, 2, 3, 4, 5, 6, 7, 8]])
        full, last = model.encode(seq)[:, -1], model.encode(seq, last_only=True)
        changed = model.encode(seq.masked_fill(seq == 1, 2), last_only=True)
    assert last.shape == (3, 1, full.shape[-1])
    torch.testing.assert_close(last[:, 0], full, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(changed[2], last[2])  # the first item still reaches the last position
