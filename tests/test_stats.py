from __future__ import annotations

import math
import statistics
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamrec.stats import percentile, time_calls


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile(list(np.arange(101.0)), 99) == pytest.approx(99.0)
    assert percentile(np.array([3.0, 1.0, 2.0]), 0) == 1.0 and percentile([3.0, 1.0, 2.0], 100) == 3.0
    assert percentile([7.0], 99) == 7.0


def test_no_values_have_no_percentile() -> None:
    assert percentile([], 50) is None
    assert percentile(np.empty(0), 99) is None


def test_q_outside_0_to_100_is_refused() -> None:
    with pytest.raises(ValueError, match="0, 100"):
        percentile([1.0], 101)


@given(st.lists(st.floats(0, 1e6), min_size=2, max_size=50), st.sampled_from([50, 90, 99]))
def test_percentile_matches_statistics_inclusive_quantiles(values: list[float], q: int) -> None:
    expected = statistics.quantiles(values, n=100, method="inclusive")[q - 1]
    assert percentile(values, q) == pytest.approx(expected, rel=1e-9, abs=1e-9)


def test_time_calls_counts_every_timed_call_and_reports_nan_for_none() -> None:
    calls: list[int] = []
    timing = time_calls(lambda: calls.append(1), runs=5, warmup=2, batch=4)
    assert len(calls) == 7 and 0 <= timing["p50_ms"] <= timing["p99_ms"] and timing["cpu_ms_per_seq"] >= 0
    empty = time_calls(lambda: None, runs=0, warmup=0)
    assert math.isnan(empty["p50_ms"]) and math.isnan(empty["p99_ms"])


def test_what_runs_between_the_timed_calls_is_not_counted() -> None:
    order: list[str] = []

    def burn() -> None:  # 20 ms of CPU, not of wall time
        order.append("between")
        start = time.process_time()
        while time.process_time() - start < 0.02:
            pass

    timing = time_calls(lambda: order.append("call"), runs=4, warmup=1, between=burn)
    assert order == ["call"] + ["between", "call"] * 4  # before each timed call, not the warm-up
    assert timing["p99_ms"] < 20 and timing["cpu_ms_per_seq"] < 20
