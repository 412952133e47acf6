"""`streamrec infra up|status` against the real services (they are up for the session)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from streamrec.infra.manager import infra_status, infra_up
from streamrec.settings import Settings

pytestmark = pytest.mark.integration


def test_up_is_idempotent_and_status_reports_both_healthy(infra: Settings) -> None:
    again = infra_up(infra)
    assert [(s.name, s.healthy, s.changed) for s in again] == [("kafka", True, False), ("redis", True, False)]
    status = {s.name: s for s in infra_status(infra)}
    assert status["kafka"].address == infra.kafka_bootstrap and status["kafka"].pid
    assert status["redis"].pid


def test_cli_status_exit_code_follows_health(infra: Settings) -> None:
    env = {**os.environ, **infra.to_env()}
    ok = subprocess.run([sys.executable, "-m", "streamrec", "infra", "status"], env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "healthy" in ok.stdout
    elsewhere = {**env, "STREAMREC_HOME": "/nonexistent-streamrec-home", "STREAMREC_REDIS_PORT": "1",
                 "STREAMREC_KAFKA_PORT": "2"}
    down = subprocess.run([sys.executable, "-m", "streamrec", "infra", "status"], env=elsewhere,
                          capture_output=True, text=True)
    assert down.returncode == 1 and "down" in down.stdout
