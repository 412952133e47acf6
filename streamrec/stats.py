"""Summary statistics of measurements (latencies, freshness), shared by the benchmarks and the live demo."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["percentile", "time_calls"]


def percentile(values: Sequence[float] | np.ndarray, q: float) -> float | None:
    """The ``q``-th percentile (``0 <= q <= 100``) of ``values``, interpolating linearly between the
    two nearest ranks (numpy's default, the same as ``statistics.quantiles(method="inclusive")``).

    None when there are no values: no measurement is not a measurement of zero, so each caller
    says what it shows instead (a JSON null, 0.0 on a live view, NaN in a table).
    """
    data = np.asarray(values, dtype=np.float64)
    if not 0 <= q <= 100:
        raise ValueError(f"a percentile lies in [0, 100], got {q}")
    return float(np.percentile(data, q)) if data.size else None


def time_calls(call: Callable[[], object], *, runs: int, warmup: int, batch: int = 1,
               between: Callable[[], object] | None = None) -> dict[str, float]:
    """``call`` run ``warmup`` times untimed, then ``runs`` times: p50/p99 of its wall time in ms (NaN for
    no runs), and this process's CPU ms per call and per item of a ``batch`` (the figure capacity follows).
    ``between`` runs before each timed call, untimed (e.g. evicting the caches)."""
    for _ in range(warmup):
        call()
    times = np.empty(runs)
    cpu = 0.0
    for i in range(runs):
        if between is not None:
            between()
        cpu0, t0 = time.process_time(), time.perf_counter()
        call()
        times[i] = time.perf_counter() - t0
        cpu += time.process_time() - cpu0
    cpu_per_item = cpu / max(runs, 1) / batch
    return {"p50_ms": _ms(times, 50), "p99_ms": _ms(times, 99), "cpu_ms_per_seq": round(cpu_per_item * 1e3, 4)}


def _ms(times_s: np.ndarray, q: float) -> float:
    p = percentile(times_s, q)
    return float("nan") if p is None else round(p * 1e3, 3)
