from __future__ import annotations

import pytest

from streamrec.bench.ingest import IngestBenchConfig, run_ingest_bench, synthetic_events
from streamrec.errors import ConfigError
from streamrec.events.schema import encode_event, parse_event
from streamrec.settings import Settings


def test_synthetic_events_are_deterministic_valid_and_time_ordered() -> None:
    events = list(synthetic_events(2000, seed=3, start_ms=1_700_000_000_000))
    assert events == list(synthetic_events(2000, seed=3, start_ms=1_700_000_000_000))
    assert [e["timestamp"] for e in events] == sorted(e["timestamp"] for e in events)
    assert len({e["event_id"] for e in events}) == 2000
    assert all(parse_event(encode_event(e)) for e in events[:200])
    assert 100 < len({e["session_id"] for e in events}) < 2000


@pytest.mark.integration
def test_a_small_ingest_bench_reports_every_figure_and_loses_nothing(infra: Settings) -> None:
    result = run_ingest_bench(infra, IngestBenchConfig(events=3000, fresh_rate=500, fresh_seconds=2,
                                                       source="synthetic"))
    assert result["lost"] == 0 and result["events"] == 4000
    assert result["events_per_s"] > 0 and result["faust_ceiling_events_per_s"] > 0
    assert result["freshness_observed"] == 1000
    assert 0 < result["freshness_p50_ms"] <= result["freshness_p99_ms"] < 5000


@pytest.mark.parametrize("workers", [0, 7])
def test_the_bench_refuses_more_workers_than_partitions(workers: int) -> None:
    with pytest.raises(ConfigError, match="partitions"):
        run_ingest_bench(Settings(topic_partitions=6), IngestBenchConfig(workers=workers))
