from __future__ import annotations

from collections import Counter

import pytest

from streamrec.bench.hostile import (
    HostileBenchConfig,
    endless_session,
    format_hostile,
    hostile_events,
    probe_session,
    require_cap,
    run_hostile_bench,
)
from streamrec.errors import ConfigError
from streamrec.events.schema import encode_event, parse_event
from streamrec.settings import Settings


def test_the_hostile_stream_has_new_items_one_endless_session_and_probes_spread_through_it() -> None:
    events = list(hostile_events(3000, "r", start_ms=1_700_000_000_000, probes=10, probe_len=5))
    assert events == list(hostile_events(3000, "r", start_ms=1_700_000_000_000, probes=10, probe_len=5))
    assert len(events) == 3050 and all(parse_event(encode_event(e)) for e in events[:300])
    assert len({e["item_id"] for e in events}) == len({e["event_id"] for e in events}) == 3050
    assert [e["timestamp"] for e in events] == list(range(1_700_000_000_000, 1_700_000_000_000 + 3050))
    sessions = Counter(e["session_id"] for e in events)
    assert sessions[endless_session("r")] == 1000
    probes = [probe_session("r", p) for p in range(10)]
    assert all(sessions[sid] == 5 for sid in probes)
    assert len(sessions) == 1 + 10 + 2000  # every other hostile event opens a session of its own
    positions = [i for i, e in enumerate(events) if e["session_id"] == probes[3]]
    assert [p * 5 // 3050 for p in positions] == [0, 1, 2, 3, 4]  # one event in each fifth of the stream


def test_the_hostile_bench_refuses_a_redis_without_a_cap() -> None:
    with pytest.raises(ConfigError, match="no memory cap"):
        require_cap(0, "redis://127.0.0.1:6379/0")
    require_cap(1024, "redis://127.0.0.1:6379/0")


@pytest.mark.integration
def test_a_small_hostile_run_loses_nothing_and_stays_within_the_bounds(infra: Settings) -> None:
    settings = infra.replace(counter_max_items=500, cooc_max_partners=5)
    result = run_hostile_bench(settings, HostileBenchConfig(events=20_000, probes=50, progress=False))
    assert result["published"] == 20_250
    assert result["lost"] == 0 and result["applied"] == 20_250 and result["probe_sessions_wrong"] == 0
    assert result["under_cap"] and 0 < result["used_memory_before"] and result["maxmemory"] > 0
    assert result["sess_items_keys"] >= 1 + 50  # the endless session and the probes at least (fresh ones may expire)
    assert result["cooc_keys"] > 0 and result["cooc_sampled"] > 0
    assert "lost 0" in format_hostile(result)
    # the bounds
    assert result["pop_count_zcard"] <= 500 and result["pop_decayed_zcard"] <= 500
    assert result["endless_items_zcard"] <= settings.session_max_len
    assert result["cooc_max_zcard_sampled"] <= 5
