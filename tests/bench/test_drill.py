"""The fault drill: the local broker, then the local Redis, restarted while clicks flow and a client
asks a server. ``pytest tests/bench/test_drill.py -s`` prints the figures; ``STREAMREC_DRILL_JSON=PATH``
also writes them.

It restarts the shared test infra and leaves it running and healthy (asserted below), so it is safe
in ``make test``: pytest runs one test at a time, every other test opens its own connections, topics
and Redis prefix (``isolated``) when it starts, and no session-wide fixture holds a connection across
tests (``tests/stream/test_broker_restart.py`` restarts the broker mid-suite too). What it is not safe
with is another process using the same infra at the same time (a second pytest run, ``make demo``):
that one sees the restarts."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from streamrec.bench.drill import DrillConfig, run_drill
from streamrec.infra.kafka_broker import KafkaBroker
from streamrec.infra.manager import infra_status
from streamrec.infra.redis_server import RedisServer
from streamrec.settings import Settings

pytestmark = pytest.mark.integration


def test_kafka_and_redis_restarts_lose_nothing(isolated: Settings, tmp_path: Path, trained_registry: Path,
                                               server_factory: Any) -> None:
    assert KafkaBroker(isolated).process.pid() is not None and RedisServer(isolated).process.pid() is not None, \
        "the drill restarts the broker and Redis that `streamrec infra up` started"
    with redis.Redis.from_url(isolated.redis_address) as client:
        if client.config_get("appendonly")["appendonly"] != "yes":
            # A Redis started before `infra` configured the append-only file: turn it on live so the
            # first restart keeps today's data. The restart itself runs Redis as `infra` configures
            # it, so a configuration without persistence would still show up below as lost events.
            client.config_set("appendonly", "yes")
            while client.info("persistence")["aof_rewrite_in_progress"] or \
                    client.info("persistence").get("aof_rewrite_scheduled"):
                time.sleep(0.1)
    server = server_factory(isolated.replace(registry=trained_registry, metrics_port=0, registry_poll_s=0.5))
    config = DrillConfig(items=tuple(str(i) for i in range(1, 400)))  # items the ml-100k models know
    try:
        result = run_drill(isolated, server.target, config, tmp_path)
    finally:
        assert all(s.healthy for s in infra_status(isolated)), "the drill must leave Kafka and Redis running"
    print(json.dumps(result, indent=2))
    if os.environ.get("STREAMREC_DRILL_JSON"):
        Path(os.environ["STREAMREC_DRILL_JSON"]).write_text(json.dumps(result, indent=2) + "\n")

    assert result["publish_failed"] == 0
    assert result["lost"] == result["lost_in_sessions"] == 0
    assert result["duplicates"] == result["duplicates_in_sessions"] == 0
    assert result["sessions_exact"] == result["sessions_checked"] > 0
    for name in ("kafka", "redis"):
        assert result[name]["recovery_s"] is not None and result[name]["recovery_s"] < 60, result[name]
    assert result["redis"]["server_recovery_s"] is not None and result["redis"]["server_recovery_s"] < 30
    assert result["redis"]["answers_during"].get("degraded", 0) > 0, "Redis was down: the server must say so"
    # the server never reads Kafka: a broker restart leaves it answering (a degraded answer or two can
    # still come from Redis reads slower than STREAMREC_REDIS_TIMEOUT_S while the JVM starts on 2 cores)
    kafka_answers = result["kafka"]["answers_during"]
    assert kafka_answers.get("ok", 0) > 0 and not any(a.startswith("error") for a in kafka_answers), kafka_answers
