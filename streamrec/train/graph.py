"""The user-item graph and BPR triples: LightGCN's epoch steps.

The graph's "users" are the training sequences (users under protocol A, sessions under B). An
epoch is as many triples as there are (sequence, item) edges: each a random edge and an item
drawn uniformly from the catalogue as its negative, as the official LightGCN samples.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

__all__ = ["BPRTriples", "interaction_matrix", "normalised_adjacency"]


def interaction_matrix(sequences: Sequence[np.ndarray], n_items: int) -> sp.csr_matrix:
    """(n_sequences, n_items + 1) 0/1: which items each sequence holds (column 0, padding, is empty)."""
    rows = np.repeat(np.arange(len(sequences)), [len(s) for s in sequences])
    cols = np.concatenate([np.asarray(s, dtype=np.int64) for s in sequences]) if len(sequences) else np.zeros(0, int)
    keep = (cols >= 1) & (cols <= n_items)
    r = sp.csr_matrix((np.ones(int(keep.sum()), np.float32), (rows[keep], cols[keep])),
                      shape=(len(sequences), n_items + 1))
    r.data[:] = 1.0  # a repeated item is one edge
    return r


def normalised_adjacency(r: sp.csr_matrix) -> torch.Tensor:
    """D^-1/2 [[0, R], [R^T, 0]] D^-1/2 as a torch sparse (U + V, U + V) float32 matrix, users first."""
    n_users, n_items = r.shape
    a = sp.bmat([[None, r], [r.T, None]], format="coo", dtype=np.float32)
    degree = np.asarray(a.sum(axis=1)).ravel()
    inv = np.where(degree > 0, 1.0 / np.sqrt(np.maximum(degree, 1e-12)), 0.0).astype(np.float32)
    values = inv[a.row] * a.data * inv[a.col]
    index = torch.from_numpy(np.vstack([a.row, a.col]).astype(np.int64))
    return torch.sparse_coo_tensor(index, torch.from_numpy(values), (n_users + n_items,) * 2,
                                   check_invariants=True).coalesce()


@dataclass
class BPRTriples:
    """``model(users, positives, negatives) -> (logits, loss)`` on random edges; attaches the graph first."""

    sequences: Sequence[np.ndarray]
    n_items: int
    _r: sp.csr_matrix = field(init=False, repr=False)
    _adjacency: torch.Tensor = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._r = interaction_matrix(self.sequences, self.n_items).tocoo()
        self._adjacency = normalised_adjacency(self._r.tocsr())

    def n_steps(self, batch_size: int) -> int:
        return -(-self._r.nnz // batch_size)

    def losses(self, model: nn.Module, batch_size: int, device: torch.device,
               rng: np.random.Generator) -> Iterator[torch.Tensor]:
        model.set_graph(self._adjacency)  # type: ignore[operator]
        users, items = self._r.row.astype(np.int64), self._r.col.astype(np.int64)
        order = rng.permutation(len(users))
        for lo in range(0, len(order), batch_size):
            idx = order[lo:lo + batch_size]
            neg = rng.integers(1, self.n_items + 1, size=len(idx))
            _, loss = model(torch.from_numpy(users[idx]).to(device), torch.from_numpy(items[idx]).to(device),
                            torch.from_numpy(neg).to(device))
            yield loss
