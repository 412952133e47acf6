"""``streamrec bench startup``: the /proc parsing, the summary and the release size on a fake registry;
the /proc readers on this test's own processes; and a server child on an empty registry (listening,
its processes found, stopped whole). The end-to-end run needs a trained registry: not here."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streamrec.bench import startup
from streamrec.bench.startup import (
    ProcessMemory,
    RunResult,
    StartupBenchConfig,
    descendants,
    first_and_rest,
    format_startup,
    listening_inodes,
    parent_of,
    release_sizes,
    role_of,
    serving_streak,
    smaps_rollup,
    summarize,
)
from streamrec.errors import ConfigError

ROLLUP = """55637b08f000-7ffe02aca000 ---p 00000000 00:00 0                          [rollup]
Rss:              812340 kB
Pss:              401170 kB
Pss_Anon:         300000 kB
Shared_Clean:     400000 kB
Private_Clean:      1200 kB
Private_Dirty:    300100 kB
AnonHugePages:         0 kB
"""

TCP = """  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:C383 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0 100 0 0 10 0
   1: 0100007F:C383 0100007F:9C40 01 00000000:00000000 00:00000000 00000000  1000        0 4343 1 0 20 4 30 10 -1
   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4444 1 0 100 0 0 10 0
"""
TCP6 = """  sl  local_address                         remote_address                        st tx_queue rx_queue tr
   0: 00000000000000000000000000000000:C383 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 4545 1 0 100 0 0 10 0
"""


def test_smaps_rollup_gives_every_kb_field_and_skips_the_header() -> None:
    fields = smaps_rollup(ROLLUP)
    assert fields["Rss"] == 812_340 and fields["Pss"] == 401_170 and fields["Private_Dirty"] == 300_100
    assert fields["AnonHugePages"] == 0 and len(fields) == 7


def test_the_parent_pid_is_read_after_the_last_parenthesis() -> None:
    assert parent_of("1234 (python) S 77 1234 1234 0 -1") == 77
    assert parent_of("1234 (a) b (c)) R 88 1 1 0") == 88  # a command name may hold ") "


def test_descendants_are_the_whole_subtree_parents_first() -> None:
    parents = {1: 0, 10: 1, 11: 10, 12: 10, 13: 12, 20: 1, 21: 20, 30: 11}
    assert descendants(10, parents) == [11, 12, 13, 30]
    assert descendants(13, parents) == [] and descendants(99, parents) == []


def test_roles_come_from_the_command_line() -> None:
    py = "/venv/bin/python"
    assert role_of([py, "-P", "-m", "streamrec", "serve"], root=True) == "server"
    assert role_of([py, "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5)",
                    "--multiprocessing-fork"], root=False) == "spawned"
    assert role_of([py, "-c", "from multiprocessing.resource_tracker import main;main(4)"],
                   root=False) == "resource_tracker"
    assert role_of(["/usr/bin/something", "x"], root=False) == "something"


def test_listening_sockets_on_the_port_from_tcp_and_tcp6_tables() -> None:
    port = 0xC383
    assert listening_inodes(TCP, port) == {4242}  # the established connection (01) is not a listener
    assert listening_inodes(TCP6, port) == {4545}
    assert listening_inodes(TCP, 0x1F90) == {4444} and listening_inodes(TCP, 1) == set()


def test_the_serving_streak_makes_a_loading_process_unlikely_to_be_missed() -> None:
    assert serving_streak(1) == 1
    for n in (2, 3, 4, 8):
        k = serving_streak(n)
        assert (1 - 1 / n) ** k <= 1e-3 < (1 - 1 / n) ** (k - 1)
    assert serving_streak(2) == 10


def test_first_and_median_of_the_rest() -> None:
    assert first_and_rest([19.0, 2.0, 1.0, 3.0]) == (19.0, 2.0)
    assert first_and_rest([19.0, 2.0, 1.0]) == (19.0, 1.5)
    assert first_and_rest([5.0]) == (5.0, None)
    with pytest.raises(ValueError):
        first_and_rest([])


def _run(listening: float, serving: float, *pss_mb: int, answered: str = "") -> RunResult:
    memory = tuple(ProcessMemory(100 + i, "server" if i == 0 else "spawned", 2 * p * 1024, p * 1024, p * 512)
                   for i, p in enumerate(pss_mb))
    return RunResult(len(pss_mb), listening, serving, memory, answered, 10 if not answered else 0)


def test_the_summary_takes_the_cold_run_and_the_median_of_the_others() -> None:
    runs = [_run(0.9, 20.0, 700, 650), _run(0.5, 1.2, 500, 100), _run(0.6, 1.4, 520, 110),
            _run(0.4, 1.0, 510, 90)]
    s = summarize(runs)
    assert (s["listening_s_first"], s["listening_s_rest"]) == (0.9, 0.5)
    assert (s["serving_s_first"], s["serving_s_rest"]) == (20.0, 1.2)
    # the memory of the run whose total is the lower median of the warm runs: 600, 630, 600 -> 600, run 1
    assert s["memory_run"] == 1 and s["pss_total_mb"] == 600.0 and s["pss_total_mb_first"] == 1350.0
    assert s["roles"] == ["server", "spawned"]
    assert s["pss_mb"] == [500.0, 100.0] and s["rss_mb"] == [1000.0, 200.0] and s["uss_mb"] == [250.0, 50.0]
    assert s["answered"] is True and [r["serving_s"] for r in s["runs"]] == [20.0, 1.2, 1.4, 1.0]
    single = summarize([_run(1.0, 2.0, 300, answered="Recommend failed: UNAVAILABLE")])
    assert single["memory_run"] == 0 and single["listening_s_rest"] is None and single["answered"] is False


def test_the_report_says_what_the_second_process_adds(tmp_path: Path) -> None:
    config = StartupBenchConfig(registry=tmp_path, runs=2)
    release = {"members": {"deepfm": {"version": "v1", "bytes": 3 * 1024 * 1024, "files": 2}},
               "total_bytes": 3 * 1024 * 1024}
    runs = {1: [_run(1, 9, 900), _run(0.5, 1.5, 800)], 2: [_run(1, 9, 950, 400), _run(0.5, 1.6, 800, 200)]}
    report = startup._report(config, "/src/streamrec", release, runs)
    assert report["second_process_adds"] == 0.25 and report["release_total_mb"] == 3.0
    assert set(report["processes"]) == {"1", "2"} and json.loads(json.dumps(report)) == report
    text = format_startup(report)
    assert "25.0%" in text and "deepfm v1 3.00 MB" in text and "NOT" not in text
    assert "second_process_adds" not in startup._report(config, "/src", release, {1: runs[1]})


def _version(registry: Path, name: str, version: str, files: dict[str, int], manifest: dict[str, object]) -> None:
    directory = registry / name / version
    (directory / "sub").mkdir(parents=True)
    for rel, size in files.items():
        (directory / rel).write_bytes(b"x" * size)
    (directory / "manifest.json").write_text(json.dumps({"version": version, **manifest}))


def test_the_release_size_sums_the_ranker_and_every_member_its_manifest_names(tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    _version(registry, "deepfm", "r1", {"model.onnx": 1000}, {})
    _version(registry, "deepfm", "r2", {"model.onnx": 2000, "sub/items.npy": 500}, {"pipeline": {
        "generator_versions": {"sasrec": "s1", "itemknn": "k1", "mf": None}}})
    (registry / "deepfm" / "CURRENT").write_text("r2\n")
    _version(registry, "sasrec", "s1", {"model.onnx": 300}, {})
    _version(registry, "sasrec", "s2", {"model.onnx": 99_999}, {})  # not in the release
    _version(registry, "itemknn", "k1", {"neighbours.npy": 4000, "sub/sims.npy": 4000}, {})
    os.symlink(registry / "sasrec" / "s2" / "model.onnx", registry / "itemknn" / "k1" / "link.onnx")
    sizes = release_sizes(registry)
    manifest = {n: len((registry / n / v / "manifest.json").read_bytes())
                for n, v in (("deepfm", "r2"), ("sasrec", "s1"), ("itemknn", "k1"))}
    assert sizes["members"] == {
        "deepfm": {"version": "r2", "bytes": 2500 + manifest["deepfm"], "files": 3},
        "itemknn": {"version": "k1", "bytes": 8000 + manifest["itemknn"], "files": 3},  # the link is not followed
        "sasrec": {"version": "s1", "bytes": 300 + manifest["sasrec"], "files": 2},
    }
    assert sizes["total_bytes"] == sum(m["bytes"] for m in sizes["members"].values())


def test_a_registry_without_a_release_or_with_a_missing_member_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no CURRENT deepfm"):
        release_sizes(tmp_path)
    _version(tmp_path, "deepfm", "r1", {}, {"pipeline": {"generator_versions": {"mf": "m9"}}})
    (tmp_path / "deepfm" / "CURRENT").write_text("r1")
    with pytest.raises(ConfigError, match="mf m9"):
        release_sizes(tmp_path)


def test_the_server_pythonpath_goes_first_for_the_server_alone(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "old-checkout"
    (fake / "streamrec").mkdir(parents=True)
    (fake / "streamrec" / "__init__.py").write_text("")
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    monkeypatch.setenv("STREAMREC_TLS_CERT", "/etc/cert.pem")
    monkeypatch.setenv("STREAMREC_GRPC_HOST", "0.0.0.0")
    config = StartupBenchConfig(registry=tmp_path, server_pythonpath=fake)
    env = startup._child_env(config)
    assert env["PYTHONPATH"] == f"{fake}{os.pathsep}/elsewhere" and env["STREAMREC_METRICS_PORT"] == "0"
    assert env["STREAMREC_GRPC_HOST"] == "127.0.0.1" and "STREAMREC_TLS_CERT" not in env
    assert os.environ["PYTHONPATH"] == "/elsewhere"
    # run from this checkout's root: -P keeps the current directory's streamrec from shadowing it
    assert startup._server_code(config) == str(fake / "streamrec")
    assert startup._server_code(StartupBenchConfig(registry=tmp_path)) == str(Path(startup.__file__).parents[1])


def test_the_proc_readers_find_a_child_its_memory_and_a_listening_socket() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        assert startup.process_tree(os.getpid())[0] == os.getpid() and child.pid in startup.process_tree(os.getpid())
        rows = {m.pid: m for m in startup._memory(os.getpid())}
        assert rows[os.getpid()].role == "server" and rows[child.pid].role == Path(sys.executable).name
        assert all(0 < m.uss_kb <= m.pss_kb <= m.rss_kb for m in rows.values())
    finally:
        child.communicate(b"")
    assert not startup._alive(child.pid)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        assert startup._listeners(os.getpid(), port) == 0
        sock.listen()
        assert startup._listeners(os.getpid(), port) == 1


@pytest.mark.integration
def test_a_server_on_an_empty_registry_listens_with_all_its_processes_and_stops_whole(tmp_path: Path) -> None:
    """No model: it listens and never serves. Its two processes are found by their sockets, and stop."""
    (tmp_path / "registry").mkdir()
    config = StartupBenchConfig(registry=tmp_path / "registry", timeout_s=120.0, stop_timeout_s=30.0)
    server = startup.ServerProcess(config, 2, tmp_path / "serve.log")
    server.spawn()
    try:
        assert server.proc is not None
        assert 0 < server.wait_listening() < 120
        deadline = time.monotonic() + 120
        while startup._listeners(server.proc.pid, server.port) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert startup._listeners(server.proc.pid, server.port) == 2, startup._log_tail(server.log)
        server.tree = startup.process_tree(server.proc.pid)
        roles = [m.role for m in startup._memory(server.proc.pid)]
        assert roles == ["server", "forked"]
        assert startup._health(server.target, "streamrec.v1.Recommender") == "NOT_SERVING"
    finally:
        server.stop()
    assert server.proc.returncode is not None and not any(startup._alive(p) for p in server.tree)


def test_a_forked_process_is_named_for_what_it_is() -> None:
    assert role_of([sys.executable, "-m", "streamrec", "serve", "--processes", "2"], root=False) == "forked"


@pytest.mark.integration
def test_a_second_server_process_shares_the_release_with_the_first(trained_registry: Path) -> None:
    """``serve --processes 2`` loads the release once and forks: both processes serve at once, and the
    second adds well under what a process of its own costs (spawned processes, each loading the
    release, added 66 to 70% here; the issue's target is 30%)."""
    config = StartupBenchConfig(registry=trained_registry, processes=(1, 2), runs=1, warm_requests=200,
                                timeout_s=300.0, stop_timeout_s=30.0)
    report = startup.run_startup_bench(config)
    for n in ("1", "2"):
        assert report["processes"][n]["serving_s_first"] is not None and report["processes"][n]["answered"]
    roles = report["processes"]["2"]["roles"]
    assert roles[0] == "server" and roles.count("forked") == 1, roles
    assert report["second_process_adds"] < 0.3, report
