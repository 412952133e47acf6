"""The bag of a history: pooled over the whole history, and over every prefix at once."""

from __future__ import annotations

import pytest
import torch

from streamrec.models.bag import pool, prefix_pool


@pytest.mark.parametrize("norm", ["mean", "sqrt"])
def test_each_prefix_pools_exactly_its_own_items(norm: str) -> None:
    torch.manual_seed(0)
    seq = torch.tensor([[0, 0, 3, 1, 4], [5, 2, 2, 6, 1], [0, 0, 0, 0, 0]])
    emb = torch.randn(7, 4)[seq]  # (B, T, C)
    prefixes = prefix_pool(emb, seq, norm)  # type: ignore[arg-type]
    for b in range(len(seq)):
        for t in range(seq.shape[1]):
            items = seq[b, : t + 1][seq[b, : t + 1] > 0]
            n = max(len(items), 1)
            want = emb[b, : t + 1][seq[b, : t + 1] > 0].sum(0) / (n if norm == "mean" else n ** 0.5)
            torch.testing.assert_close(prefixes[b, t], want)
    torch.testing.assert_close(pool(emb, seq, norm), prefixes[:, -1])  # type: ignore[arg-type]
    assert (pool(emb, seq)[2] == 0).all()  # an empty history pools to zero, not NaN


def test_padding_and_order_do_not_change_the_bag() -> None:
    torch.manual_seed(0)
    table = torch.randn(7, 4)
    a, b = torch.tensor([[0, 0, 3, 1, 4]]), torch.tensor([[4, 3, 1]])
    torch.testing.assert_close(pool(table[a], a), pool(table[b], b))
