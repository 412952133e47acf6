"""``streamrec live`` (streamrec/demo/run.py) end to end: held-out ml-100k sessions through the real Kafka, worker,
Redis and gRPC server. It lives here for the fixtures that train a small registry and start servers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streamrec.cli import main
from streamrec.demo.live import StepResult
from streamrec.demo.run import LiveConfig, plan_live, run_live
from streamrec.settings import Settings
from streamrec.stream.launcher import WorkerProcess
from tests.serve.helpers import settings_for
from tests.stream.helpers import read_sessions

pytestmark = pytest.mark.integration


def test_live_replays_sessions_and_scores_every_next_click(isolated: Settings, registry: Path, tmp_path: Path,
                                                          server_factory: Any, monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_for(isolated, registry)
    running = server_factory(settings)
    config = LiveConfig(target=running.target, sessions=2, rate=0, max_clicks=4, seed=1)
    plan = plan_live(settings, config)
    assert plan.dataset == "ml-100k" and len(plan.sessions) == 2
    seen: list[StepResult] = []
    with WorkerProcess(settings, tmp_path / "worker.log"):
        summary = run_live(settings, config, plan, lambda result, board: seen.append(result))
        for key, value in settings.to_env().items():
            monkeypatch.setenv(key, value)
        assert main(["live", "--json", "--sessions", "3", "--rate", "0", "--max-clicks", "3",
                     "--target", running.target]) == 0

    predictions = sum(len(s.items) - 1 for s in plan.sessions)
    assert summary["predictions"] == len(seen) == predictions and summary["degraded"] == 0
    assert summary["hits"] == sum(r.hit for r in seen) and summary["hr@10"] == round(summary["hits"] / predictions, 4)
    assert 0 < summary["latency_p50_ms"] <= summary["latency_p99_ms"] and summary["apply_p50_ms"] > 0
    assert summary["model_versions"]["deepfm"] and all(len(r.recommended) == 10 for r in seen)
    # Redis holds every replayed click of each session, in order (the last click is never replayed)
    assert read_sessions(settings, summary["session_ids"]) == {s.session_id: list(s.items[:-1]) for s in plan.sessions}

    cli = json.loads(capsys.readouterr().out)
    assert cli["sessions"] == 3 and cli["predictions"] == 6 and cli["k"] == 10 and cli["dataset"] == "ml-100k"
    assert 0 <= cli["hits"] <= 6 and cli["latency_p99_ms"] > 0
    assert set(cli["session_ids"]).isdisjoint(summary["session_ids"])  # a second run starts fresh sessions

