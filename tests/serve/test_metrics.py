"""``ServeMetrics``: one registry per server, the version gauge follows swaps, /metrics over HTTP."""

from __future__ import annotations

import urllib.request

from streamrec.serve.metrics import ServeMetrics


def versions(metrics: ServeMetrics) -> dict[tuple[str, str], float]:
    return {(s.labels["model"], s.labels["version"]): s.value for m in metrics.registry.collect()
            if m.name == "streamrec_model_version_info" for s in m.samples}


def test_the_version_gauge_names_only_what_serves_now() -> None:
    metrics = ServeMetrics()
    assert metrics.registry.get_sample_value("streamrec_model_loaded") == 0.0
    metrics.set_versions({"deepfm": "v1", "sasrec": "s1"})
    metrics.set_versions({"deepfm": "v2", "sasrec": "s1"})
    assert versions(metrics) == {("deepfm", "v2"): 1.0, ("sasrec", "s1"): 1.0}
    assert metrics.registry.get_sample_value("streamrec_model_loaded") == 1.0
    metrics.set_versions({})
    assert versions(metrics) == {} and metrics.registry.get_sample_value("streamrec_model_loaded") == 0.0


def test_servers_in_one_process_count_apart() -> None:
    a, b = ServeMetrics(), ServeMetrics()  # a shared registry would refuse the second set of names
    a.responses.labels("Recommend", "OK").inc()
    a.latency.labels("Recommend").observe(0.004)
    assert a.registry.get_sample_value("streamrec_rpc_responses_total", {"rpc": "Recommend", "code": "OK"}) == 1.0
    assert b.registry.get_sample_value("streamrec_rpc_responses_total", {"rpc": "Recommend", "code": "OK"}) is None
    assert a.registry.get_sample_value("streamrec_rpc_latency_seconds_bucket",
                                       {"rpc": "Recommend", "le": "0.005"}) == 1.0, "millisecond buckets"


def test_metrics_over_http_on_a_port_of_its_own_and_idempotent_start_stop() -> None:
    metrics = ServeMetrics()
    metrics.cold_start.labels("Recommend").inc()
    port = metrics.start_http(0)
    try:
        assert port > 0 and metrics.start_http(0) == port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            body = reply.read().decode()
        assert 'streamrec_cold_start_responses_total{rpc="Recommend"} 1.0' in body
    finally:
        metrics.stop_http()
        metrics.stop_http()
