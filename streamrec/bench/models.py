"""Inference latency of the exported models: each ``CURRENT`` version in the registry, via onnxruntime.

Inputs are random item sequences (no padding) of a fixed length; each batch size is timed over
``runs`` calls after ``warmup`` untimed ones, and reported as p50/p99 in milliseconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamrec.export.onnx_export import INPUT, OUTPUT, load_onnx

__all__ = ["ModelBenchConfig", "bench_models", "format_rows"]


@dataclass(frozen=True, kw_only=True)
class ModelBenchConfig:
    batch_sizes: tuple[int, ...] = (1, 32)
    seq_len: int = 50
    runs: int = 200
    warmup: int = 20
    intra_op_threads: int = 1
    seed: int = 0


def bench_models(registry: Path, config: ModelBenchConfig = ModelBenchConfig()) -> list[dict[str, object]]:
    """One flat row per (model, batch size)."""
    rows: list[dict[str, object]] = []
    rng = np.random.default_rng(config.seed)
    for model_dir in sorted(p for p in Path(registry).iterdir() if (p / "CURRENT").is_file()):
        rec = load_onnx(model_dir, intra_op_threads=config.intra_op_threads)
        manifest, session = rec.manifest, rec.session
        n_items, max_len = manifest["config"]["n_items"], manifest["config"]["max_len"]
        seq_len = min(config.seq_len, max_len)
        for batch in config.batch_sizes:
            seq = rng.integers(1, n_items + 1, size=(batch, seq_len), dtype=np.int64)
            for _ in range(config.warmup):
                session.run([OUTPUT], {INPUT: seq})
            times = np.empty(config.runs)
            for i in range(config.runs):
                t0 = time.perf_counter()
                session.run([OUTPUT], {INPUT: seq})
                times[i] = time.perf_counter() - t0
            rows.append({"model": model_dir.name, "version": manifest["version"], "batch": batch,
                         "seq_len": seq_len, "runs": config.runs, "threads": config.intra_op_threads,
                         "p50_ms": round(float(np.percentile(times, 50)) * 1e3, 3),
                         "p99_ms": round(float(np.percentile(times, 99)) * 1e3, 3),
                         "per_seq_p50_ms": round(float(np.percentile(times, 50)) * 1e3 / batch, 4)})
    return rows


def format_rows(rows: list[dict[str, object]]) -> str:
    head = f"{'model':10} {'version':20} {'batch':>5} {'seq':>4} {'p50 ms':>9} {'p99 ms':>9} {'ms/seq':>8}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['model']!s:10} {r['version']!s:20} {r['batch']:>5} {r['seq_len']:>4} "
                     f"{r['p50_ms']:>9.3f} {r['p99_ms']:>9.3f} {r['per_seq_p50_ms']:>8.4f}")
    return "\n".join(lines)
