"""Training curves: loss and validation NDCG@10 per epoch, as a PNG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from streamrec.train.loop import METRIC, EpochRecord  # noqa: E402

__all__ = ["plot_curves"]


def plot_curves(history: Sequence[EpochRecord], path: Path, title: str, best_epoch: int | None = None) -> Path:
    """Write the curves to ``path``; ``best_epoch``, the one whose weights were kept, is marked on both."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    epochs = [r.epoch for r in history]
    fig, (ax_loss, ax_val) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, [r.loss for r in history], marker=".")
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="loss")
    ax_val.plot(epochs, [r.val.get(METRIC, float("nan")) for r in history], marker=".", color="tab:orange")
    ax_val.set(xlabel="epoch", ylabel=f"validation {METRIC}", title=f"validation {METRIC}")
    for ax in (ax_loss, ax_val):
        ax.grid(alpha=0.3)
        if best_epoch:
            ax.axvline(best_epoch, color="tab:green", linestyle="--", linewidth=1, label=f"best epoch ({best_epoch})")
    if best_epoch:
        ax_val.legend(loc="best")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
