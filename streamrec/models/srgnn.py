"""SR-GNN (Wu et al., 2019): a gated graph network over the session's item graph, read out by attention.

The session graph has a node per distinct item and an edge for each transition, normalised by the
in-degree for the incoming messages and the out-degree for the outgoing ones, as in the official
code. Here the graph is built inside the model from the padded sequence itself, with dense (B, T, T)
matrices and no scatter or unique op, so the whole thing exports to ONNX (PyTorch Geometric's and
torch_scatter's ops do not: pytorch#126660, pyg#8415).

Nodes are positions, not distinct items. Two positions holding the same item start from the same
embedding and have the same edges, so they stay equal through every step; a message sums over the
positions of a neighbour divided by how often its item occurs, which is the official code's sum
over distinct items. The readout then uses positions, as the official code does: the last item's
state is the local preference, the attention-weighted sum of all states the global one.

Training takes random prefixes of the training sequences and the item that follows each
(``streamrec.train.prefixes``): every prefix has its own graph, so unlike SASRec's there is one
target per input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from streamrec.errors import ConfigError

__all__ = ["SRGNN", "SRGNNConfig", "session_graph"]


@dataclass(frozen=True, kw_only=True)
class SRGNNConfig:
    n_items: int
    max_len: int = 50  # the most recent items of a session that form its graph
    d_model: int = 64
    steps: int = 1  # gated graph propagation steps; the paper's best is 1

    def __post_init__(self) -> None:
        if min(self.n_items, self.max_len, self.d_model, self.steps) < 1:
            raise ConfigError(f"n_items, max_len, d_model and steps must be positive; got {self}")


def session_graph(seq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``seq`` (B, T) left-padded -> the normalised incoming and outgoing adjacency over positions, (B, T, T) each.

    ``incoming[b, i, j]`` weighs the message that position i receives from position j, whose item
    precedes i's item somewhere in the session: 1 / (in-degree of i's item x copies of j's item).
    ``outgoing`` is the same for the items that follow.
    """
    T = seq.shape[1]
    real = seq > 0  # (B, T)
    both = real[:, :, None] & real[:, None, :]  # (B, T, T)
    same = ((seq[:, :, None] == seq[:, None, :]) & both).float()  # (B, T, T) positions holding one item
    idx = torch.arange(T, device=seq.device)
    step = (idx[None, :] == idx[:, None] + 1)[None] & both  # (B, T, T) position t -> t + 1
    edge = ((same @ step.float() @ same) > 0).float()  # (B, T, T) item of i -> item of j
    share = 1.0 / same.sum(-1).clamp(min=1.0)  # (B, T) 1 / copies of the position's item
    outgoing = edge * share[:, None, :]  # (B, T, T) i's successors, each distinct item counted once
    incoming = edge.transpose(1, 2) * share[:, None, :]  # (B, T, T) i's predecessors
    outgoing = outgoing / outgoing.sum(-1, keepdim=True).clamp(min=1.0)
    incoming = incoming / incoming.sum(-1, keepdim=True).clamp(min=1.0)
    return incoming, outgoing


class GatedGraphCell(nn.Module):
    """One propagation step: messages along incoming and outgoing edges, then a GRU-style update."""

    def __init__(self, d: int) -> None:
        super().__init__()
        self.edge_in = nn.Linear(d, d)
        self.edge_out = nn.Linear(d, d)
        self.gate_input = nn.Linear(2 * d, 3 * d)
        self.gate_hidden = nn.Linear(d, 3 * d)

    def forward(self, h: torch.Tensor, incoming: torch.Tensor, outgoing: torch.Tensor) -> torch.Tensor:
        a = torch.cat([incoming @ self.edge_in(h), outgoing @ self.edge_out(h)], dim=-1)  # (B, T, 2C)
        i_r, i_z, i_n = self.gate_input(a).chunk(3, dim=-1)  # (B, T, C) each
        h_r, h_z, h_n = self.gate_hidden(h).chunk(3, dim=-1)
        reset, update = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
        new = torch.tanh(i_n + reset * h_n)
        return new + update * (h - new)  # (B, T, C)


class SRGNN(nn.Module):
    def __init__(self, config: SRGNNConfig) -> None:
        super().__init__()
        self.config = c = config
        d = c.d_model
        self.item_emb = nn.Embedding(c.n_items + 1, d, padding_idx=0)
        self.cell = GatedGraphCell(d)
        self.query_last = nn.Linear(d, d)  # W1 on the last item
        self.query_all = nn.Linear(d, d, bias=False)  # W2 on every item (c is the bias of W1)
        self.attend = nn.Linear(d, 1, bias=False)  # q
        self.combine = nn.Linear(2 * d, d, bias=False)  # W3 on [global; local]
        bound = 1.0 / math.sqrt(d)
        for p in self.parameters():  # the official initialisation
            nn.init.uniform_(p, -bound, bound)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def session(self, seq: torch.Tensor) -> torch.Tensor:
        """``seq`` (B, T) left-padded -> the session vector (B, C)."""
        incoming, outgoing = session_graph(seq)
        real = (seq > 0).unsqueeze(-1).float()  # (B, T, 1)
        h = self.item_emb(seq)  # (B, T, C)
        for _ in range(self.config.steps):
            h = self.cell(h, incoming, outgoing) * real
        last = h[:, -1]  # (B, C) left padding: the last position is the most recent item
        alpha = self.attend(torch.sigmoid(self.query_last(last)[:, None, :] + self.query_all(h)))  # (B, T, 1)
        preference = (alpha * h * real).sum(1)  # (B, C)
        return self.combine(torch.cat([preference, last], dim=-1))  # (B, C)

    def forward(self, seq: torch.Tensor, targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``seq`` (B, T) and the item after each, ``targets`` (B,): logits (B, V) and the cross-entropy."""
        logits = self.score(seq)
        return logits, None if targets is None else F.cross_entropy(logits, targets)

    def score(self, seq: torch.Tensor) -> torch.Tensor:
        """The served graph: ``(B, T)`` left-padded item indices -> ``(B, n_items + 1)`` scores."""
        return self.session(seq) @ self.item_emb.weight.T  # (B, V)
