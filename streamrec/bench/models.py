"""Inference latency of the exported models and of the whole ranking pipeline, on the CPU.

- every sequence model with a ``CURRENT`` version: onnxruntime on random item sequences (no
  padding) of a fixed length, per batch size;
- every generator published as arrays: its ``score`` on random histories, per batch size;
- the ranker: onnxruntime scoring one list of ``candidates`` random feature rows;
- with ``pipeline``: ``Pipeline.recommend_many`` for a batch of sessions held in memory, per batch
  size (every generator, the candidate union, features, the ranker and re-ranking), the release
  loaded as a server loads it; and the same batch stage by stage (``pipeline/<stage>`` rows).

Each is timed over ``runs`` calls after ``warmup`` untimed ones and reported as p50/p99 in ms of
wall time per call, and as CPU ms per session (this process's CPU time over the timed calls, divided
by calls and batch size): the figure a server's capacity follows. With ``cold``, 64 MiB are written
before each timed call, so that it starts with cold caches, as a request does at moderate load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from streamrec import registry as reg
from streamrec.bench.cpu import blas_kernels
from streamrec.errors import ConfigError
from streamrec.export.generators import load_generator
from streamrec.export.onnx_load import load_onnx, load_ranker
from streamrec.stats import time_calls

__all__ = ["ModelBenchConfig", "bench_current_pipeline", "bench_models", "bench_pipeline", "format_rows", "timed"]


@dataclass(frozen=True, kw_only=True)
class ModelBenchConfig:
    batch_sizes: tuple[int, ...] = (1, 32)
    seq_len: int = 50
    candidates: int = 200  # rows the ranker scores per call: one session's candidate list
    runs: int = 200
    warmup: int = 20
    intra_op_threads: int = 1
    seed: int = 0
    cold: bool = False  # evict the CPU caches before each timed call


EVICT_BYTES = 64 << 20  # written before each timed call with ``cold``: twice this machine's last-level cache


def timed(call: Callable[[], object], config: ModelBenchConfig, batch: int = 1) -> dict[str, float]:
    """``time_calls`` with the config's runs; with ``cold``, each timed call starts with cold caches.

    A server at moderate load runs one small batch now and then, and other processes (the load
    generator, Redis, the other server processes) run in between and evict its arrays and code from
    the caches: cold, one session costs much more CPU than in a tight loop of calls."""
    if not config.cold:
        return time_calls(call, runs=config.runs, warmup=config.warmup, batch=batch)
    scratch = np.zeros(EVICT_BYTES, dtype=np.uint8)
    return time_calls(call, runs=config.runs, warmup=config.warmup, batch=batch,
                      between=lambda: np.add(scratch, 1, out=scratch))


def _kind(model_dir: Path) -> str:
    return str(reg.read_manifest(reg.resolve(model_dir)).get("kind", "sequence"))


def bench_models(registry: Path, config: ModelBenchConfig = ModelBenchConfig()) -> list[dict[str, object]]:
    """One flat row per (sequence model, batch size), and one per ranker.

    numpy's BLAS is held to ``intra_op_threads`` here too, as in a server. Unheld, the generators'
    products ran on two threads, and OpenBLAS's idle threads spin for a while after each call: the
    CPU of the rows timed next (the pipeline's included) counted that spinning, up to twice their own.
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=config.intra_op_threads):
        return _bench_models(registry, config)


def _bench_models(registry: Path, config: ModelBenchConfig) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    rng = np.random.default_rng(config.seed)
    common = {"runs": config.runs, "threads": config.intra_op_threads, "cold": config.cold, "blas": blas_kernels()}
    for model_dir in (reg.model_dir(registry, name) for name in reg.model_names(registry)
                      if reg.read_pointer(registry, name) is not None):
        if _kind(model_dir) == "generator":  # arrays, scored in numpy: its score() on random histories
            generator: Any = load_generator(model_dir)
            for batch in config.batch_sizes:
                histories = [rng.integers(1, generator.n_items + 1, size=config.seq_len) for _ in range(batch)]
                timing = timed(lambda h=histories: generator.score(h), config, batch)
                rows.append({"model": model_dir.name, "version": generator.manifest["version"], "batch": batch,
                             "seq_len": config.seq_len, "candidates": 0, **common, **timing,
                             "per_seq_p50_ms": round(timing["p50_ms"] / batch, 4)})
            continue
        if _kind(model_dir) == "ranker":
            ranker = load_ranker(model_dir, intra_op_threads=config.intra_op_threads)
            cfg, n = ranker.manifest["config"], config.candidates
            sparse = np.stack([rng.integers(0, size, n) for size in cfg["sparse_sizes"]], axis=1).astype(np.int64)
            multi = (rng.random((n, cfg["n_multi"])) < 0.2).astype(np.float32)
            dense = rng.normal(size=(n, cfg["n_dense"])).astype(np.float32)
            timing = timed(lambda: ranker.score(sparse, multi, dense), config)
            rows.append({"model": model_dir.name, "version": ranker.manifest["version"], "batch": 1,
                         "seq_len": 0, "candidates": n, **common, **timing, "per_seq_p50_ms": timing["p50_ms"]})
            continue
        rec = load_onnx(model_dir, intra_op_threads=config.intra_op_threads)
        manifest = rec.manifest
        n_items, max_len = manifest["config"]["n_items"], manifest["config"]["max_len"]
        seq_len = min(config.seq_len, max_len)
        for batch in config.batch_sizes:
            seq = rng.integers(1, n_items + 1, size=(batch, seq_len), dtype=np.int64)
            # the graph's scores, or (session contract) the graph's vectors times the item table
            timing = timed(lambda seq=seq: rec.score_fn(seq), config, batch)
            rows.append({"model": model_dir.name, "version": manifest["version"], "batch": batch,
                         "seq_len": seq_len, "candidates": 0, **common, **timing,
                         "per_seq_p50_ms": round(timing["p50_ms"] / batch, 4)})
    return rows


def bench_pipeline(pipeline, config: ModelBenchConfig = ModelBenchConfig(), k: int = 10) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """``pipeline.recommend_many`` for random in-memory sessions of ``seq_len`` items, one row per batch
    size, each followed by its stages (``pipeline/<generator>``, ``/candidates``, ``/features``,
    ``/ranker``, and ``/rest``: re-ranking, answers and what the stages lose to each other's cache).

    numpy's BLAS is held to ``intra_op_threads`` like onnxruntime: a server runs one thread per
    process, and a multi-threaded BLAS on a busy machine is slower by an order of magnitude.
    """
    from threadpoolctl import threadpool_limits

    from streamrec.rank.features import SessionContext, pair_features
    from streamrec.rank.pipeline import Query

    rng = np.random.default_rng(config.seed)
    rows: list[dict[str, object]] = []
    common = {"version": "+".join(pipeline.sources), "seq_len": config.seq_len,
              "candidates": int(sum(pipeline.n_per_source.values())), "runs": config.runs,
              "threads": config.intra_op_threads, "cold": config.cold, "blas": blas_kernels()}
    with threadpool_limits(limits=config.intra_op_threads):
        for batch in config.batch_sizes:
            histories = [rng.choice(np.arange(1, pipeline.table.n_items + 1), size=config.seq_len, replace=False)
                         for _ in range(batch)]
            queries = [Query(h, k) for h in histories]
            whole = timed(lambda q=queries: pipeline.recommend_many(q), config, batch)
            rows.append({"model": "pipeline", "batch": batch, **common, **whole,
                         "per_seq_p50_ms": round(whole["p50_ms"] / batch, 4)})
            scores = pipeline.source_scores(histories)
            cands = pipeline.candidates(scores, histories)
            contexts = [SessionContext()] * batch
            features = pair_features(cands, histories, pipeline.table, contexts)
            stages: dict[str, Callable[[], object]] = {
                **{name: (lambda g=g, h=histories: g.score(h)) for name, g in pipeline.generators.items()},
                "candidates": lambda: pipeline.candidates(scores, histories),
                "features": lambda: pair_features(cands, histories, pipeline.table, contexts),
                "ranker": lambda: pipeline.rank(cands, features),
            }
            stage_times = {name: timed(call, config, batch) for name, call in stages.items()}
            rest = whole["cpu_ms_per_seq"] - sum(t["cpu_ms_per_seq"] for t in stage_times.values())
            stage_times["rest"] = {"p50_ms": float("nan"), "p99_ms": float("nan"), "cpu_ms_per_seq": round(rest, 4)}
            rows += [{"model": f"pipeline/{name}", "batch": batch, **common, **t,
                      "per_seq_p50_ms": round(t["p50_ms"] / batch, 4)} for name, t in stage_times.items()]
    return rows


def bench_current_pipeline(registry: Path, config: ModelBenchConfig = ModelBenchConfig()) -> list[dict[str, object]]:
    """``bench_pipeline`` for the registry's CURRENT release, loaded from its artifacts as a server loads it."""
    from streamrec.rank.release import load_release

    version = reg.read_pointer(registry, reg.RANKER)
    if version is None:
        raise ConfigError(f"no {reg.RANKER} version is CURRENT under {registry}; publish one: streamrec train-ranker")
    return bench_pipeline(load_release(registry, version).pipeline, config)


def format_rows(rows: list[dict[str, object]]) -> str:
    head = (f"{'model':20} {'version':22} {'batch':>5} {'seq':>4} {'cands':>5} {'p50 ms':>9} {'p99 ms':>9} "
            f"{'ms/seq':>8} {'cpu ms/seq':>10}")
    lines = [head, "-" * len(head)]
    for r in rows:
        version = str(r["version"])
        version = version if len(version) <= 22 else version[:19] + "..."
        lines.append(f"{r['model']!s:20} {version:22} {r['batch']:>5} {r['seq_len']:>4} {r['candidates']:>5} "
                     f"{r['p50_ms']:>9.3f} {r['p99_ms']:>9.3f} {r['per_seq_p50_ms']:>8.4f} {r['cpu_ms_per_seq']:>10.4f}")
    return "\n".join(lines)
