from __future__ import annotations

import json
import shutil
from pathlib import Path

from streamrec.infra.kafka_broker import broker_properties
from streamrec.infra.processes import OwnedProcess, port_open
from streamrec.settings import Settings


def test_owned_process_start_stop_and_stale_pid_files(tmp_path: Path) -> None:
    proc = OwnedProcess("sleeper", tmp_path / "run" / "s.pid", tmp_path / "logs" / "s.log")
    sleep = shutil.which("sleep")
    assert sleep is not None
    pid = proc.start([sleep, "60"])
    assert proc.pid() == pid
    assert proc.stop(timeout_s=5) is True
    assert proc.pid() is None and not proc.pidfile.exists()
    assert proc.stop() is False  # idempotent

    # a pid file whose process is gone, or whose pid now belongs to another process, is stale
    proc.pidfile.write_text(json.dumps({"pid": 1, "start_time": 123456789, "argv": ["x"]}))
    assert proc.pid() is None and not proc.pidfile.exists()


def test_broker_properties_are_a_single_node_kraft_cluster_on_the_configured_ports() -> None:
    props = broker_properties(Settings.from_env({}, kafka_port=1111, kafka_controller_port=2222,
                                                topic_partitions=4), Path("/data"))
    lines = dict(line.split("=", 1) for line in props.splitlines())
    assert lines["process.roles"] == "broker,controller"
    assert lines["listeners"] == "PLAINTEXT://127.0.0.1:1111,CONTROLLER://127.0.0.1:2222"
    assert lines["controller.quorum.voters"] == "1@127.0.0.1:2222"
    assert (lines["log.dirs"], lines["num.partitions"]) == ("/data", "4")


def test_port_open_is_false_for_a_closed_port() -> None:
    assert port_open("127.0.0.1", 1) is False
