"""Prometheus metrics of the server, in a registry of its own (several servers may share a process in tests)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

__all__ = ["ServeMetrics"]

logger = logging.getLogger(__name__)

# milliseconds matter here: the targets are p99 <= 10 ms
_BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.latency = Histogram("streamrec_rpc_latency_seconds", "Server-side latency per RPC", ["rpc"],
                                 buckets=_BUCKETS, registry=r)
        self.responses = Counter("streamrec_rpc_responses_total", "Responses by RPC and status code",
                                 ["rpc", "code"], registry=r)
        self.errors = Counter("streamrec_rpc_errors_total", "Non-OK responses by RPC and status code",
                              ["rpc", "code"], registry=r)
        self.shed = Counter("streamrec_shed_requests_total", "Requests refused with RESOURCE_EXHAUSTED by load "
                            "shedding: queue_full (STREAMREC_SERVE_MAX_QUEUE waited already) or queue_timeout "
                            "(waited past STREAMREC_SERVE_QUEUE_TIMEOUT_MS) or busy (the loop read Redis late)",
                            ["rpc", "reason"], registry=r)
        self.guarded = Counter("streamrec_guarded_calls_total", "Calls ended or refused for holding a place without "
                               "progress (streamrec.serve.call_guard): read_timeout, stream_idle, too_many_streams",
                               ["reason"], registry=r)
        self.degraded = Counter("streamrec_degraded_responses_total", "Answers served in degraded mode",
                                ["rpc", "reason"], registry=r)
        self.cold_start = Counter("streamrec_cold_start_responses_total", "Answers for sessions with no known item",
                                  ["rpc"], registry=r)
        self.model_version = Gauge("streamrec_model_version_info", "1 for each model version being served",
                                   ["model", "version"], registry=r)
        self.swaps = Counter("streamrec_model_swaps_total", "Model version loads by outcome (swapped, refused)",
                             ["outcome"], registry=r)
        self.batch_size = Histogram("streamrec_pipeline_batch_size", "Requests answered by one pipeline pass",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128), registry=r)
        self.serving = Gauge("streamrec_model_loaded", "1 when a checked model is serving, 0 when none is", registry=r)
        self._http: Any = None

    def set_versions(self, versions: Mapping[str, str]) -> None:
        self.model_version.clear()
        for model, version in versions.items():
            self.model_version.labels(model, version).set(1)
        self.serving.set(1 if versions else 0)

    def start_http(self, port: int, host: str = "127.0.0.1") -> int:
        """Serve /metrics on ``host``:``port`` (``STREAMREC_METRICS_HOST``/``_PORT``; port 0 = pick a free
        one); returns the port."""
        if self._http is None:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
            self._http = server
            logger.info("metrics listening event=metrics_started address=%s:%s", host, server.server_port)
        return int(self._http.server_port)

    def stop_http(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
