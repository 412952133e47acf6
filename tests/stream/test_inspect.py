"""``streamrec.stream.inspect``: the read-only views of sessions, counters and consumer lag that
``streamrec sessions`` and ``streamrec stats`` print (dead letters and the group's assignment are
checked by the worker and scale-out tests)."""

from __future__ import annotations

import asyncio
import json

import pytest
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from streamrec.settings import Settings
from streamrec.stream.inspect import consumer_lag, format_session, list_sessions, show_sessions, stats
from streamrec.stream.session_store import SessionEvent
from tests.serve.helpers import write_session
from tests.stream.helpers import make_events, publish

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


def test_a_session_shows_its_last_events_and_says_how_many_it_holds() -> None:
    events = [SessionEvent(f"item-{i}", "click" if i % 2 else "view", T0 + 1000 * i) for i in range(10)]
    text = format_session("s1", events, ttl_s=1800, last=3)
    assert text.splitlines() == [
        "s1: 10 event(s), last at 2023-11-14 22:13:29 UTC, expires in 1800s",
        "  …",
        "   click        item-7",
        "   view         item-8",
        "   click        item-9",
    ]
    assert format_session("s1", events[:2]).splitlines()[1:] == ["   view         item-0", "   click        item-1"]
    assert format_session("gone", []) == "gone: (unknown or expired)"


@pytest.mark.integration
def test_sessions_and_counters_as_the_worker_wrote_them(isolated: Settings) -> None:
    assert asyncio.run(list_sessions(isolated, 10)) == "no live sessions in Redis"
    assert asyncio.run(list_sessions(isolated, 10, as_json=True)) == "[]"
    write_session(isolated, "s1", ["10", "20", "10"])
    write_session(isolated, "s2", ["30"])

    shown = json.loads(asyncio.run(show_sessions(isolated, ["s1", "unknown"], as_json=True)))
    assert [s["session_id"] for s in shown] == ["s1", "unknown"]
    assert [e["item_id"] for e in shown[0]["events"]] == ["10", "20", "10"] and shown[1]["events"] == []
    listed = asyncio.run(list_sessions(isolated, 10))
    assert listed.startswith("s1: 3 event(s)") and "\ns2: 1 event(s)" in listed
    assert len(json.loads(asyncio.run(list_sessions(isolated, 1, as_json=True)))) == 1

    counters = asyncio.run(stats(isolated, top=2))
    assert counters["events_applied"] == 4 and counters["live_sessions"] == 2
    assert counters["popular_all_time"][0] == ("10", 2) and len(counters["popular_now"]) == 2


@pytest.mark.integration
def test_consumer_lag_counts_what_the_worker_group_has_not_committed(isolated: Settings) -> None:
    publish(isolated, make_events(30, sessions=7, seed=3))
    lag = consumer_lag(isolated)
    assert len(lag) == isolated.topic_partitions and sum(lag.values()) == 30, lag

    busiest = max(lag, key=lambda p: lag[p])
    consumer = KafkaConsumer(bootstrap_servers=isolated.kafka_bootstrap, group_id=isolated.app_id,
                             enable_auto_commit=False)
    try:
        consumer.commit({TopicPartition(isolated.clicks_topic, busiest): OffsetAndMetadata(lag[busiest] - 1, "", -1)})
    finally:
        consumer.close()
    assert consumer_lag(isolated) == lag | {busiest: 1}
