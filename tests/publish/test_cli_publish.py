"""`streamrec publish` end to end against the real broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from kafka import KafkaConsumer, TopicPartition

from streamrec.settings import Settings

pytestmark = pytest.mark.integration


def run_cli(settings: Settings, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **settings.to_env()}
    return subprocess.run([sys.executable, "-m", "streamrec", *args], input=stdin.decode() if stdin else None,
                          capture_output=True, text=True, env=env, timeout=120)


def topic_messages(settings: Settings) -> list[tuple[bytes, bytes]]:
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, consumer_timeout_ms=3000)
    try:
        tps = [TopicPartition(settings.clicks_topic, p) for p in consumer.partitions_for_topic(settings.clicks_topic)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        return [(m.key, m.value) for m in consumer]
    finally:
        consumer.close()


def test_publish_from_stdin_validates_and_keys_by_session(isolated: Settings) -> None:
    lines = [orjson.dumps({"event_id": f"e{i}", "session_id": f"s{i % 3}", "item_id": "i", "event_type": "view",
                           "timestamp": 1_700_000_000_000 + i}) for i in range(9)]
    lines.insert(4, b'{"broken"')
    result = run_cli(isolated, "publish", "--file", "-", "-q", stdin=b"\n".join(lines) + b"\n")
    assert result.returncode == 1, result.stderr  # an invalid line makes the run fail, loudly
    assert "line 5" in result.stderr and "invalid 1" in result.stdout
    messages = topic_messages(isolated)
    assert len(messages) == 9
    assert all(key == orjson.loads(value)["session_id"].encode() for key, value in messages)


def test_publish_replays_a_dataset_with_a_limit(isolated: Settings, tmp_path: Path) -> None:
    settings = isolated.replace(data_dir=tmp_path / "data")
    result = run_cli(settings, "publish", "--dataset", "ml-100k", "--limit", "500", "-q")
    assert result.returncode == 0, result.stderr
    assert "published 500 event(s)" in result.stdout and "acked 500" in result.stdout
    values = [orjson.loads(v) for _, v in topic_messages(settings)]
    assert len(values) == 500
    assert min(v["timestamp"] for v in values) >= 874_724_710_000  # ml-100k starts in September 1997
