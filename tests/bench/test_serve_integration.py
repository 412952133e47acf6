"""``streamrec bench serve`` end to end: the bench stores sessions in Redis, starts the servers itself on the
trained registry (one normal, one with STREAMREC_SERVE_SKIP_PIPELINE=1) and the gRPC floor, and drives
every phase with the Python generator, short phases."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.bench.serve import ServeBenchConfig, format_result, run_serve_bench
from streamrec.settings import Settings

pytestmark = pytest.mark.integration

PHASES = ["floor", "check", "recommend_skip", "fixed_rate", "saturation", "recommend_stream", "long_sessions", "flood"]


def test_bench_serve_reports_cpu_per_request_of_every_phase(isolated: Settings, trained_registry: Path) -> None:
    config = ServeBenchConfig(start_server=trained_registry, seconds=1.0, rate=20, concurrency=2, channels=2,
                              sessions=30, dataset="ml-100k", long_len=200, timeout_s=5.0, flood=0.5)
    result = run_serve_bench(isolated, config)
    assert result["generator"] == "python" and result["phases"] == PHASES
    assert result["sessions_long"] > 0 and not result["degraded"]
    assert isinstance(result["sched_group_shared"], bool)  # read from /proc; test_sched_group.py has the rules
    for name in PHASES:
        r = result[name]
        assert r["errors"] == 0 and r["requests"] > 0 and r["qps"] > 0, (name, r)
        assert r["cpu_ms_per_request"] > 0, (name, r)
    for name in ("fixed_rate", "saturation", "recommend_stream", "long_sessions"):  # the full pipeline, every answer
        assert result[name]["cold_start"] == 0 and result[name]["degraded"] == 0, (name, result[name])
    skip = result["recommend_skip"]  # the server skipped the pipeline, visibly
    assert skip["cold_start"] == skip["answers_checked"] > 0 and skip["server_pid"] != result["saturation"]["server_pid"]
    assert result["floor_cpu_ms"] > 0 and result["check_over_floor"] > 0
    assert result["recommend_minus_floor_ms"] is not None
    stream = result["recommend_stream"]  # every answer read, with its own status
    assert stream["status_codes"] == {"OK": stream["requests"]} and stream["answers_checked"] == stream["requests"]
    assert stream["streams"] == 2 and result["stream_over_unary"] > 0
    assert "empty RPC / floor" in format_result(result) and "RecommendStream / Recommend" in format_result(result)
    flood = result["flood"]  # half the saturation phase's rate, open loop: all answered, none refused
    assert flood["offered_rate"] == max(1, round(0.5 * result["saturation"]["qps"]))
    assert flood["status_codes"] == {"OK": flood["requests"]} and result["flood_other_errors"] == 0
    assert result["flood_refused"] == 0 and result["flood_served_over_saturation"] == pytest.approx(
        flood["qps"] / result["saturation"]["qps"], abs=1e-3) and result["flood_served_over_saturation"] < 0.6
    assert "flood at 0.5 x saturation" in format_result(result)
