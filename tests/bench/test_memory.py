"""``streamrec bench memory``: on a throwaway redis-server of its own (only the binary is needed)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from streamrec.bench import memory
from streamrec.bench.memory import MemoryBenchConfig, Shape, format_memory, run_memory_bench, session_id, shape_events
from streamrec.cli import main
from streamrec.errors import ConfigError
from streamrec.events.schema import encode_event, parse_event
from streamrec.infra.processes import port_open
from streamrec.settings import Settings


def test_a_shape_is_sessions_x_events() -> None:
    assert Shape.parse("5000x20") == Shape(5000, 20) and str(Shape(5000, 20)) == "5000x20"
    for bad in ("5000", "0x20", "5x-1", "ax2", ""):
        with pytest.raises(ConfigError, match="SESSIONSxEVENTS"):
            Shape.parse(bad)


def test_events_come_round_by_round_across_the_sessions() -> None:
    events = list(shape_events(Shape(4, 3), start_ms=1_700_000_000_000))
    assert events == list(shape_events(Shape(4, 3), start_ms=1_700_000_000_000))
    assert [e["session_id"] for e in events[:5]] == [session_id(s) for s in (0, 1, 2, 3, 0)]
    assert Counter(e["session_id"] for e in events) == {session_id(s): 3 for s in range(4)}
    assert [e["timestamp"] for e in events[::4]] == [1_700_000_000_000 + 1000 * j for j in range(3)]
    assert len({e["event_id"] for e in events}) == 12 and all(parse_event(encode_event(e)) for e in events)


@pytest.mark.integration
def test_a_tiny_run_reports_memory_per_session_and_the_bounded_seen_ids(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMREC_SESSION_DEDUP_IDS", "3")  # fewer than the events per session: the bound bites
    out = tmp_path / "memory.json"
    assert main(["bench", "memory", "--shapes", "50x5", "--json", str(out), "--quiet"]) == 0
    report = json.loads(out.read_text())
    assert report["session_dedup_ids"] == 3 and report["redis_version"]
    (row,) = report["shapes"]
    assert set(row) == {"shape", "sessions", "events_per_session", "events", "used_memory_before",
                        "used_memory_after", "counters_bytes", "bytes_per_session", "session_items_bytes",
                        "session_seen_bytes", "session_items_len", "session_seen_ids", "write_s"}
    assert (row["shape"], row["sessions"], row["events"]) == ("50x5", 50, 250)
    assert row["bytes_per_session"] > 0 and row["counters_bytes"] > 0
    assert row["session_items_bytes"] > 0 and row["session_seen_bytes"] > 0
    assert row["session_items_len"] == 5 and 0 < row["session_seen_ids"] <= 3
    assert "50x5" in format_memory(report)


@pytest.mark.integration
def test_the_throwaway_redis_is_stopped_when_the_run_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    ports: list[int] = []

    def recorded(host: str = "127.0.0.1") -> int:
        ports.append(real(host))
        return ports[-1]

    real = memory.free_port
    monkeypatch.setattr(memory, "free_port", recorded)
    with pytest.raises(ConfigError, match="refused"):  # every bench id is longer than 5
        run_memory_bench(Settings(max_id_len=5), MemoryBenchConfig(shapes=(Shape(2, 2),), progress=False))
    assert len(ports) == 1 and not port_open("127.0.0.1", ports[0])
