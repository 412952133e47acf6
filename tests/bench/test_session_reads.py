"""``streamrec bench session-reads`` against the real Redis: both ways read the same sessions, and the
pipelined one shares its round trips when reads are in flight together."""

from __future__ import annotations

import pytest

from streamrec.bench.session_reads import WAYS, SessionReadsConfig, format_session_reads, run_session_reads
from streamrec.errors import ConfigError
from streamrec.settings import Settings
from tests.serve.helpers import write_session


@pytest.mark.integration
def test_the_two_ways_are_timed_at_each_concurrency_and_only_pipelined_reads_share_trips(isolated: Settings) -> None:
    ids = [f"s{i}" for i in range(20)]
    for i, sid in enumerate(ids):
        write_session(isolated, sid, [f"item-{i}-{j}" for j in range(5 + i)])
    config = SessionReadsConfig(reads=400, concurrency=(1, 8), repeats=1)
    report = run_session_reads(isolated, config, ids)
    rows = {(r["way"], r["concurrency"]): r for r in report["rows"]}
    assert set(rows) == {(way, c) for way in WAYS for c in (1, 8)}
    assert all(r["cpu_us_per_read"] > 0 and r["wall_us_per_read"] > 0 for r in rows.values())
    assert rows["one per read", 8]["reads_per_round_trip"] == 1.0
    assert rows["pipelined", 1]["reads_per_round_trip"] == 1.0  # alone, a read goes at once
    assert rows["pipelined", 8]["reads_per_round_trip"] > 1.5
    assert "pipelined" in format_session_reads(report)


@pytest.mark.integration
def test_sessions_that_are_not_there_are_refused(isolated: Settings) -> None:
    with pytest.raises(ConfigError, match="all empty"):
        run_session_reads(isolated, SessionReadsConfig(reads=10, repeats=1), ["nothing-1", "nothing-2"])
