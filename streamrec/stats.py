"""Summary statistics of measurements (latencies, freshness), shared by the benchmarks and the live demo."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["percentile"]


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
