from __future__ import annotations

import pytest
import redis

from streamrec.bench.ingest import (
    IngestBenchConfig,
    format_ingest,
    run_ingest_bench,
    summarise_freshness,
    synthetic_events,
)
from streamrec.bench.layers import ALL_LAYERS
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
    result = run_ingest_bench(infra, IngestBenchConfig(events=3000, fresh_rates=(500,), fresh_seconds=2,
                                                       source="synthetic"))
    assert result["lost"] == 0 and result["events"] == 3000 + 1001  # the freshness phase's warm-up event too
    assert result["events_per_s"] > 0 and result["faust_ceiling_events_per_s"] > 0
    assert [row["layer"] for row in result["layers"]] == ["faust", "shipped"]
    assert all(row["worker_cpu_us_per_event"] > 0 for row in result["layers"])
    (fresh,) = result["freshness"]
    assert fresh["observed"] == 1000 and fresh["lost"] == 0
    assert 0 < fresh["p50_ms"] <= fresh["p99_ms"] < 5000


@pytest.mark.integration
def test_the_layered_bench_times_each_layer_under_its_redis_settings_and_puts_them_back(infra: Settings) -> None:
    client = redis.Redis.from_url(infra.redis_address)
    before = {name: client.config_get(name)[name] for name in ("appendonly", "appendfsync")}
    result = run_ingest_bench(infra, IngestBenchConfig(events=20_000, fresh_rates=(400, 800), fresh_seconds=1,
                                                       source="synthetic", layers=ALL_LAYERS,
                                                       fsync_modes=("no", "everysec"), repeats=2))
    assert {name: client.config_get(name)[name] for name in before} == before
    rows = {row["layer"]: row for row in result["layers"]}
    assert list(rows) == list(ALL_LAYERS) and result["lost"] == 0
    assert rows["redis"]["redis_appendonly"] == "no" and rows["shipped"]["redis_appendonly"] == before["appendonly"]
    for name in ("faust", "parse", "redis", "shipped"):
        assert rows[name]["events_per_s"] > 0 and rows[name]["worker_cpu_us_per_event"] > 0
    # the script's work is Redis's: only the layers that write cost it CPU
    assert rows["redis"]["redis_cpu_us_per_event"] > 5 * max(rows["faust"]["redis_cpu_us_per_event"], 0.5)
    assert [(r["run"], r["appendfsync"], r["rate_offered"]) for r in result["freshness"]] == [
        (run, fsync, rate) for run in (1, 2) for fsync in ("no", "everysec") for rate in (400, 800)]
    summary = {(s["appendfsync"], s["rate_offered"]): s for s in result["freshness_summary"]}
    assert len(summary) == 4 and all(s["runs"] == 2 and s["lost"] == 0 for s in summary.values())
    for s in summary.values():
        assert s["p99_ms"]["min"] <= s["p99_ms"]["median"] <= s["p99_ms"]["max"]
    assert "| redis: + Redis writes, persistence off |" in format_ingest(result)


def test_freshness_is_summarised_per_fsync_and_rate_as_median_min_and_max() -> None:
    rows = [{"appendfsync": "no", "rate_offered": 1000.0, "p50_ms": p50, "p99_ms": p99, "lost": 0}
            for p50, p99 in ((5.0, 20.0), (7.0, 90.0), (6.0, 30.0))]
    rows.append({"appendfsync": "everysec", "rate_offered": 1000.0, "p50_ms": None, "p99_ms": None, "lost": 2})
    no, everysec = summarise_freshness(rows)
    assert no["p99_ms"] == {"median": 30.0, "min": 20.0, "max": 90.0} and no["p50_ms"]["median"] == 6.0
    assert everysec["runs"] == 1 and everysec["lost"] == 2 and everysec["p99_ms"]["median"] is None


@pytest.mark.parametrize("workers", [0, 7])
def test_the_bench_refuses_more_workers_than_partitions(workers: int) -> None:
    with pytest.raises(ConfigError, match="partitions"):
        run_ingest_bench(Settings(topic_partitions=6), IngestBenchConfig(workers=workers))


@pytest.mark.parametrize(("changes", "message"), [
    ({"layers": ("faust",)}, "'shipped' must be one of them"),
    ({"layers": ("shipped", "kafka-streams")}, "layers are"),
    ({"fsync_modes": ("sometimes",)}, "fsync modes"),
    ({"repeats": 0}, "repeats"),
    ({"fresh_rates": (1000.0, 0.0)}, "rates positive"),
])
def test_the_bench_refuses_what_it_cannot_run_before_touching_a_service(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run_ingest_bench(Settings(), IngestBenchConfig(**changes))  # type: ignore[arg-type]
