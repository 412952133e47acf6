from __future__ import annotations

from pathlib import Path

import pytest

from streamrec.errors import ConfigError
from streamrec.settings import Settings


def test_fields_come_from_streamrec_variables() -> None:
    s = Settings.from_env({"STREAMREC_KAFKA_PORT": "29092", "STREAMREC_CLICKS_TOPIC": "c",
                           "STREAMREC_BATCH_WITHIN_S": "0.01", "STREAMREC_HOME": "/tmp/x", "OTHER": "1"})
    assert (s.kafka_port, s.clicks_topic, s.batch_within_s, s.home) == (29092, "c", 0.01, Path("/tmp/x"))
    assert s.kafka_bootstrap == "127.0.0.1:29092"


def test_redis_url_overrides_host_and_port() -> None:
    assert Settings.from_env({"STREAMREC_REDIS_PORT": "7000"}).redis_address == "redis://127.0.0.1:7000/0"
    assert Settings.from_env({"STREAMREC_REDIS_URL": "redis://r:1/2"}).redis_address == "redis://r:1/2"


def test_to_env_reproduces_the_settings() -> None:
    s = Settings.from_env({}, session_ttl_s=5, redis_prefix="p:")
    assert Settings.from_env(s.to_env()) == s


@pytest.mark.parametrize(("name", "value", "message"), [
    ("STREAMREC_KAFKA_PORT", "ninety", "not a valid int"),
    ("STREAMREC_SESSION_MAX_LEN", "0", "must be positive"),
    ("STREAMREC_COMPRESSION", "brotli", "must be one of"),
    ("STREAMREC_SERVE_MAX_QUEUE", "0", "none waits forever"),
    ("STREAMREC_SERVE_MAX_IN_FLIGHT", "0", "none waits forever"),
    ("STREAMREC_SERVE_QUEUE_TIMEOUT_MS", "0", "none waits forever"),
    ("STREAMREC_SERVE_LISTENERS", "0", "must be 1 to 8"),
    ("STREAMREC_SERVE_LISTENERS", "9", "must be 1 to 8"),
    ("STREAMREC_SERVE_MAX_STREAMS", "32", "so streams never hold them all"),
    ("STREAMREC_SERVE_MAX_STREAMS", "-1", "so streams never hold them all"),
    ("STREAMREC_SERVE_READ_TIMEOUT_S", "0", "must be positive"),
    ("STREAMREC_SERVE_STREAM_IDLE_S", "-5", "must be positive"),
    ("STREAMREC_SERVE_MAX_CONNECTION_AGE_S", "-1", "0: never"),
    ("STREAMREC_FETCH_MIN_BYTES", "0", "must be positive"),
    ("STREAMREC_FETCH_MAX_WAIT_MS", "-1", "must be >= 0"),
    ("STREAMREC_RETRIEVAL_THRESHOLD", "-2", "never through the index"),
])
def test_bad_values_are_refused_with_the_variable_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        Settings.from_env({name: value})
    assert name in str(info.value) or "COMPRESSION" in str(info.value)


def test_streams_are_capped_below_the_places_of_one_listener() -> None:
    """Four listeners hold 8 of 32 places each: 8 streams could take all of one listener's."""
    assert Settings.from_env({"STREAMREC_SERVE_MAX_STREAMS": "31"}).serve_max_streams == 31
    assert Settings.from_env({"STREAMREC_SERVE_LISTENERS": "2"}).serve_max_streams == 8
    with pytest.raises(ConfigError, match=r"\(8: "):
        Settings.from_env({"STREAMREC_SERVE_LISTENERS": "4"})
    assert Settings.from_env({"STREAMREC_SERVE_LISTENERS": "4", "STREAMREC_SERVE_MAX_STREAMS": "7"}).serve_listeners == 4
