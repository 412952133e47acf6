"""The promotion gate: a retrained model reaches users only if it is not worse than what serves.

Both sides are measured by the same ``evaluate`` on the same cases: the newest held-out slice of
the new snapshot, ranked over its whole catalogue. The current models were trained on an older
vocabulary, so ``VocabBridge`` translates: histories go through item ids into the old indices
(unknown items are skipped, as the server skips them), and scores come back into the new
catalogue, where items the old model never saw rank last. That is exactly what serving the old
model on today's traffic would do, so the comparison is fair to both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from streamrec.errors import ConfigError

__all__ = ["Decision", "GateConfig", "VocabBridge", "decide"]


class VocabBridge:
    """``model`` (scoring its own ``own_vocab``) seen through another catalogue ``vocab``."""

    def __init__(self, model: object, own_vocab: Sequence[str], vocab: Sequence[str]) -> None:
        self.model = model
        self.name = getattr(model, "name", type(model).__name__)
        own = {item: i for i, item in enumerate(own_vocab) if i > 0}
        self._to_own = np.array([own.get(item, 0) for item in vocab], dtype=np.int64)  # 0: unknown
        self._to_own[0] = 0
        self._n = len(vocab)

    def fit(self, data: object) -> VocabBridge:
        return self

    def _histories(self, histories: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        mapped, kept = [], []
        for h in histories:
            own = self._to_own[np.asarray(h, dtype=np.int64)]
            keep = own > 0
            mapped.append(own[keep])
            kept.append(keep)
        return mapped, kept

    def _back(self, scores: np.ndarray) -> np.ndarray:
        scores = np.where(np.isnan(scores), -np.inf, scores)  # a history of only unknown items
        out = np.full((scores.shape[0], self._n), -np.inf, dtype=np.float32)
        known = self._to_own > 0
        out[:, known] = scores[:, self._to_own[known]]
        floor = np.where(np.isfinite(out), out, np.inf).min(axis=1, keepdims=True)
        out[:, ~known] = np.where(np.isfinite(floor), floor, 0.0) - 1.0  # unknown to the model: below all it knows
        out[:, 0] = -np.inf
        return out

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        mapped, _ = self._histories(histories)
        return self._back(np.asarray(self.model.score(mapped), dtype=np.float32))  # type: ignore[attr-defined]

    def score_in_context(self, histories: Sequence[np.ndarray], times: Sequence[np.ndarray] | None = None,
                         now: np.ndarray | None = None) -> np.ndarray:
        inner = getattr(self.model, "score_in_context", None)
        if inner is None or times is None:
            return self.score(histories)
        mapped, kept = self._histories(histories)
        return self._back(np.asarray(inner(mapped, [np.asarray(t)[k] for t, k in zip(times, kept, strict=True)],
                                           now), dtype=np.float32))


@dataclass(frozen=True)
class GateConfig:
    """``tolerance``: how much lower (relative) the new ``metric`` may be than the current one's."""

    metric: str = "NDCG@10"
    tolerance: float = 0.05

    def __post_init__(self) -> None:
        if not 0 <= self.tolerance < 1:
            raise ConfigError(f"the gate's tolerance is a fraction in [0, 1), got {self.tolerance}")


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str


def decide(new: Mapping[str, float], current: Mapping[str, float] | None, failures: Sequence[str] = (),
           config: GateConfig = GateConfig()) -> Decision:
    """Promote when no check failed and ``new`` is within the tolerance of ``current`` (always, when
    nothing serves yet)."""
    if failures:
        return Decision(False, "; ".join(failures))
    m = config.metric
    if m not in new:
        return Decision(False, f"the new version has no {m}")
    if not current or m not in current:
        return Decision(True, f"nothing current to compare with; {m} {new[m]:.4f}")
    floor = current[m] * (1 - config.tolerance)
    verdict = f"{m} {new[m]:.4f} against current {current[m]:.4f} (floor {floor:.4f}, tolerance {config.tolerance:.0%})"
    return Decision(new[m] >= floor, verdict)
