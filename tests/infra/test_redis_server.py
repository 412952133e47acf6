"""The local redis-server's memory cap: in its command line, and live on the running one."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from streamrec.infra.redis_server import RedisServer
from streamrec.settings import Settings


def test_the_command_line_caps_memory_without_eviction_and_omits_a_zero_cap(tmp_path: Path) -> None:
    capped = RedisServer(Settings(redis_maxmemory_mb=256)).argv("redis-server", tmp_path)
    assert capped[capped.index("--maxmemory") + 1] == "256mb"
    assert capped[capped.index("--maxmemory-policy") + 1] == "noeviction"
    uncapped = RedisServer(Settings(redis_maxmemory_mb=0)).argv("redis-server", tmp_path)
    assert "--maxmemory" not in uncapped and uncapped[uncapped.index("--maxmemory-policy") + 1] == "noeviction"


def test_only_a_throwaway_server_runs_without_the_append_only_file(tmp_path: Path) -> None:
    kept = RedisServer(Settings()).argv("redis-server", tmp_path)
    assert kept[kept.index("--appendonly") + 1] == "yes"
    throwaway = RedisServer(Settings(), persistent=False).argv("redis-server", tmp_path)
    assert throwaway[throwaway.index("--appendonly") + 1] == "no" and throwaway[throwaway.index("--save") + 1] == ""


@pytest.mark.integration
def test_the_running_redis_has_the_cap_of_the_settings_after_infra_up(infra: Settings) -> None:
    """``infra`` ran ``infra up``: a Redis that was already running got the cap live (CONFIG SET)."""
    client = redis.Redis.from_url(infra.redis_address, decode_responses=True)
    with client:
        config = client.config_get("maxmemory*")
    assert int(config["maxmemory"]) == infra.redis_maxmemory_mb * 1024 * 1024
    assert config["maxmemory-policy"] == "noeviction"
