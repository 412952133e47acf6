"""What a request is served from: one immutable ``ServingState``, swapped by one reference assignment.

A request reads ``holder.state`` once and uses that object to the end, so a swap never changes the
models under a request in flight: it finishes on the version it started with, and the old state is
freed when the last such request drops it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from streamrec.rank.pipeline import Pipeline
from streamrec.registry import RANKER

__all__ = ["ServingState", "StateHolder"]


@dataclass(frozen=True, eq=False)
class ServingState:
    """A loaded, checked pipeline and everything needed to speak item ids to clients."""

    pipeline: Pipeline
    vocab: tuple[str, ...]  # item_id per item index; index 0 is padding
    versions: Mapping[str, str]  # model name -> registry version
    dataset: str
    popular: np.ndarray  # int64 item indices by training popularity, best first: the last-resort answer
    index: Mapping[str, int] = field(init=False)  # item_id -> item index

    def __post_init__(self) -> None:
        object.__setattr__(self, "index", MappingProxyType({item: i for i, item in enumerate(self.vocab) if i > 0}))
        object.__setattr__(self, "versions", MappingProxyType(dict(self.versions)))

    @property
    def ranker_version(self) -> str:
        return self.versions.get(RANKER, "")

    def indices(self, item_ids: Sequence[str]) -> list[int]:
        """Known items' indices, order kept; unknown ids are skipped (new items, other catalogues)."""
        index = self.index
        return [index[i] for i in item_ids if i in index]


class StateHolder:
    """The current ``ServingState`` (None until a first one loads). Reads are lock-free; swaps are
    serialised so that two loaders cannot interleave their checks and assignments."""

    def __init__(self, state: ServingState | None = None) -> None:
        self._state = state
        self._lock = threading.Lock()

    @property
    def state(self) -> ServingState | None:
        return self._state

    def swap(self, new: ServingState) -> ServingState | None:
        """Make ``new`` current; returns the previous state."""
        with self._lock:
            old, self._state = self._state, new
        return old
