"""Evaluation results for people and machines: a text table, a JSON document, a PNG bar chart.

``COLUMNS`` fixes each protocol's headline metrics and the label they are shown under (protocol B
says Recall@20, the GRU4Rec literature's name for what ``evaluate`` calls HR@20: with one target
per case they are equal). The JSON keeps every metric under ``evaluate``'s own keys.
"""

from __future__ import annotations

import json
import math
import os
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from streamrec.eval.protocols import ProtocolName

__all__ = ["COLUMNS", "format_table", "plot", "title", "to_json", "write_json"]

Results = Mapping[str, Mapping[str, float]]

#: protocol -> (label shown, key in ``evaluate``'s result) of its headline metrics.
COLUMNS: Final[Mapping[ProtocolName, tuple[tuple[str, str], ...]]] = {
    "loo": (("HR@10", "HR@10"), ("NDCG@10", "NDCG@10"), ("HR@20", "HR@20"), ("NDCG@20", "NDCG@20"),
            ("MRR@20", "MRR@20")),
    "session": (("Recall@20", "HR@20"), ("MRR@20", "MRR@20"), ("NDCG@10", "NDCG@10"),
                ("Coverage@20", "Coverage@20"), ("Popularity@20", "Popularity@20")),
}


def title(dataset: str, summary: Mapping[str, object], part: str, cases: int) -> str:
    """E.g. "ML-1M, protocol A: leave-one-out, full ranking, history excluded (test, 6,040 cases)"."""
    return f"{dataset.upper()}, {summary['description']} ({part}, {cases:,} cases)"


def format_table(heading: str, results: Results, protocol: ProtocolName) -> str:
    """One row per model: the protocol's headline metrics, then fit and evaluation seconds."""
    labels = [label for label, _ in COLUMNS[protocol]]
    width = max([len("model"), *map(len, results)])
    head = f"{'model':<{width}}  " + "  ".join(f"{label:>{max(len(label), 7)}}" for label in labels)
    head += f"  {'fit s':>8}  {'eval s':>8}"
    lines = [heading, head, "-" * len(head)]
    for model, row in results.items():
        cells = [f"{row.get(key, math.nan):>{max(len(label), 7)}.4f}" for label, key in COLUMNS[protocol]]
        lines.append(f"{model:<{width}}  " + "  ".join(cells)
                     + f"  {row.get('fit_s', math.nan):>8.2f}  {row.get('eval_s', math.nan):>8.2f}")
    return "\n".join(lines)


def to_json(
    dataset: str, part: str, protocol: ProtocolName, summary: Mapping[str, object], results: Results
) -> dict[str, object]:
    """``{"protocol": {dataset, split, settings and sizes, columns}, "results": {model: {metric: value}}}``.

    ``columns`` maps each headline label to its key in the results.
    """
    settings = {"dataset": dataset, "split": part, **summary, "columns": dict(COLUMNS[protocol])}
    return {"protocol": settings, "results": {m: dict(r) for m, r in results.items()}}


def write_json(path: Path, document: Mapping[str, object]) -> None:
    """Write atomically (temporary name, then rename), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n")
    os.replace(tmp, path)


def plot(path: Path, heading: str, results: Results, protocol: ProtocolName) -> None:
    """One small bar chart per headline metric, one bar per model, each bar labelled with its value.

    Separate panels because the metrics differ in scale (HR@10 near 0.1 beside a popularity
    percentile near 0.9 would flatten the differences that matter).
    """
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    columns = COLUMNS[protocol]
    models = list(results)
    colors = [f"C{i % 10}" for i in range(len(models))]
    fig, axes = plt.subplots(1, len(columns), figsize=(len(columns) * (1.2 + 0.3 * len(models)), 3.8))
    try:
        for ax, (label, key) in zip(axes, columns, strict=True):
            bars = ax.bar(range(len(models)), [results[m].get(key, math.nan) for m in models], color=colors)
            ax.bar_label(bars, fmt="%.3g", fontsize=6, rotation=90, padding=2)
            ax.set_title(label, fontsize=9)
            ax.set_xticks(range(len(models)), models, rotation=45, ha="right", fontsize=8)
            ax.tick_params(axis="y", labelsize=7)
            ax.margins(y=0.2)  # room for the labels
            ax.grid(axis="y", alpha=0.3)
        fig.suptitle(textwrap.fill(heading, 110), fontsize=9)
        fig.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
