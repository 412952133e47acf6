"""``streamrec bench serve`` without Redis: the /proc CPU accounting, the server found by its port, ghz's
argv and report, the protoset, the install's message without Go, and the gRPC floor answering and measured
through a phase of the Python generator. The run against servers is in test_serve_integration.py."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2

from streamrec.bench import ghz as ghz_module
from streamrec.bench.cpu import blas_kernels, cpu_ticks, find_server, process_cpu_s, server_root, tree_cpu_s
from streamrec.bench.ghz import GhzRun, install_ghz, parse_report, run_ghz, write_protoset
from streamrec.bench.serve import (
    CHECK_CALL,
    ServeBenchConfig,
    _cpu_since,
    _flood_verdict,
    _floor,
    _Phase,
    _ratios,
    _run_phase,
    format_result,
)
from streamrec.errors import ConfigError
from streamrec.serve.health_probe import check

HERE = Path(__file__).parent


def test_cpu_ticks_count_after_the_last_parenthesis() -> None:
    # fields: pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    stat = "4242 (serve (a) b)) S 1 4242 4242 0 -1 4194560 900 0 0 0 150 25 7 3 20 0 5 0 100 0 0"
    assert cpu_ticks(stat) == 150 + 25 + 7 + 3


def test_the_figures_name_numpys_blas_kernels_and_a_forced_core_type(monkeypatch: pytest.MonkeyPatch) -> None:
    import faiss  # noqa: F401  (scipy and faiss load BLAS libraries of their own: numpy's alone is named)
    import numpy
    import scipy.linalg  # noqa: F401
    from threadpoolctl import threadpool_info

    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    assert len(blas) >= 2
    arch = next(i["architecture"] for i in blas if Path(numpy.__file__).parent.name + ".libs" in i["filepath"])
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    assert blas_kernels().startswith(f"openblas {arch}") and blas_kernels().endswith("(OPENBLAS_CORETYPE=Haswell)")
    monkeypatch.delenv("OPENBLAS_CORETYPE")
    assert blas_kernels() == f"openblas {arch}"


def test_tree_cpu_grows_with_the_work_of_the_process() -> None:
    before, start = tree_cpu_s(os.getpid()), os.times()
    x = 0
    while (os.times().user + os.times().system) - (start.user + start.system) < 0.2:  # CPU, not wall time
        x += 1
    assert tree_cpu_s(os.getpid()) - before >= 0.15


def test_the_cpu_shares_say_which_process_of_the_tree_did_the_work() -> None:
    before = process_cpu_s(os.getpid())  # this process's tree: under the whole suite, the services' too
    burn = ("import os, sys\nt = os.times()\nwhile os.times().user + os.times().system - t.user - t.system < 0.3: pass\n"
            "print('done', flush=True)\nsys.stdin.read()")
    with subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as child:
        try:
            assert child.stdout is not None and child.stdout.readline().strip() == "done"  # burnt, and alive
            spent = _cpu_since(os.getpid(), before)
            child_cpu = process_cpu_s(os.getpid())[child.pid]
        finally:
            child.kill()
    assert child_cpu >= 0.25 and spent["cpu_s"] >= child_cpu - 0.05
    shares = spent["cpu_shares"]
    assert len(shares) >= 2 and sum(shares) == pytest.approx(1.0, abs=0.01) and shares == sorted(shares, reverse=True)
    assert shares[0] >= child_cpu / spent["cpu_s"] - 0.05  # the largest share is at least the child's


def _phase_row(**extra: object) -> dict[str, object]:
    return {"label": "Recommend", "concurrency": 32, "qps": 1000.0, "p50_ms": 1.0, "p90_ms": 2.0, "p99_ms": 3.0,
            "errors": 0, "cpu_ms_per_request": 1.0} | extra


def test_an_uneven_share_of_the_processes_is_flagged() -> None:
    result = {"generator": "ghz", "target": "t", "server_pid": 1, "sessions": 1, "k": 10, "model_versions": {},
              "degraded": False, "phases": ["floor", "even", "uneven"], "floor_cpu_ms": None,
              "floor": _phase_row(cpu_shares=[1.0]), "even": _phase_row(cpu_shares=[0.55, 0.45]),
              "uneven": _phase_row(cpu_shares=[0.97, 0.03])}
    warnings = [line for line in format_result(result).splitlines() if "WARNING" in line]
    expected = ("  WARNING: one server process did 97% of the work: the connections landed unevenly on the "
                "processes (use more --channels)")
    assert warnings == [expected]


def test_the_server_root_is_above_its_forked_children() -> None:
    parents = {10: 1, 11: 10, 12: 10, 20: 1}
    cmdlines = {1: "init", 10: "python -m streamrec serve", 11: "python -m streamrec serve",
                12: "python -m streamrec serve", 20: "other"}
    assert server_root([11, 12], parents, cmdlines) == 10  # the parent holds no socket itself
    assert server_root([10], parents, cmdlines) == 10
    with pytest.raises(ConfigError, match="--server-pid"):
        server_root([11, 20], parents, cmdlines)


def test_ghz_report_is_read_in_milliseconds_with_its_errors() -> None:
    # captured from ghz 0.120.0 against the floor, then given 3 deadline errors
    figures = parse_report(json.loads((HERE / "ghz_report.json").read_text()))
    assert figures["requests"] == 503 and figures["errors"] == 3
    assert figures["status_codes"] == {"OK": 500, "DeadlineExceeded": 3}
    assert figures["p50_ms"] == pytest.approx(1.617, abs=1e-3) and figures["p99_ms"] == pytest.approx(4.017, abs=1e-3)
    assert figures["p50_ms"] <= figures["p90_ms"] <= figures["p99_ms"] and figures["qps"] == pytest.approx(4234.6)


def test_a_ghz_run_reports_the_generators_own_cpu(tmp_path: Path) -> None:
    """A stand-in for ghz that burns CPU, then writes the captured report where ``-o`` says."""
    fake = tmp_path / "ghz"
    fake.write_text(f"#!{sys.executable}\n"
                    "import os, shutil, sys\n"
                    "t = os.times()\n"
                    "while os.times().user + os.times().system - t.user - t.system < 0.3: pass\n"
                    f"shutil.copy({str(HERE / 'ghz_report.json')!r}, sys.argv[sys.argv.index('-o') + 1])\n")
    fake.chmod(0o755)
    run = GhzRun("127.0.0.1:1", CHECK_CALL, [{"service": ""}], count=503, concurrency=8, connections=2, timeout_s=1.0)
    figures = run_ghz(fake, run)
    assert figures["requests"] == 503 and 0.25 <= figures["generator_cpu_s"] < 5.0
    assert figures["generator_cpu_ms_per_call"] == pytest.approx(figures["generator_cpu_s"] / 503 * 1e3, rel=1e-2)


def test_ghz_argv_fixed_count_rate_and_warm_up() -> None:
    run = GhzRun("127.0.0.1:1", CHECK_CALL, [{"service": ""}], count=1000, concurrency=8, connections=2,
                 timeout_s=1.0, rate=500.0)
    argv = run.argv(Path("/g/ghz"), Path("p.protoset"), Path("d.json"), Path("o.json"))
    assert argv[-1] == "127.0.0.1:1" and argv[argv.index("-n") + 1] == "1000" and argv[argv.index("--rps") + 1] == "500"
    fractional = dataclasses.replace(run, rate=987.6).argv(Path("ghz"), Path("p"), Path("d"), Path("o"))
    assert fractional[fractional.index("--rps") + 1] == "988"  # ghz refuses a fraction
    assert argv[argv.index("--timeout") + 1] == "1000ms" and argv[argv.index("-O") + 1] == "json"
    warm = GhzRun("t:1", CHECK_CALL, [], count=0, concurrency=8, connections=2, timeout_s=1.0, duration_s=1.0)
    argv = warm.argv(Path("ghz"), Path("p"), Path("d"), Path("o"))
    assert "-n" not in argv and argv[argv.index("-z") + 1] == "1s" and "--rps" not in argv


def test_protoset_holds_both_services(tmp_path: Path) -> None:
    files = descriptor_pb2.FileDescriptorSet.FromString(write_protoset(tmp_path / "all.protoset").read_bytes()).file
    services = {f"{f.package}.{s.name}" for f in files for s in f.service}
    assert {"streamrec.v1.Recommender", "grpc.health.v1.Health"} <= services


def test_ghz_install_says_what_to_do_without_go(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ghz_module.shutil, "which", lambda name: None)
    with pytest.raises(ConfigError, match="install Go"):
        install_ghz(tmp_path)


def test_floor_answers_is_found_by_its_port_and_costs_cpu_per_call() -> None:
    with _floor() as (target, pid):
        with grpc.insecure_channel(target) as channel:
            assert check(channel, "", 5.0) == "SERVING"
        assert find_server(int(target.rsplit(":", 1)[1])) == pid
        phase = _Phase("floor", "floor Check", target, pid, "check", [{"service": ""}])
        result = _run_phase(phase, ServeBenchConfig(seconds=0.5, concurrency=4, channels=2))
    assert result["requests"] > 0 and result["errors"] == 0 and result["server_pid"] == pid
    assert result["cpu_ms_per_request"] > 0 and result["cpu_shares"] == [1.0]


def test_ratios_against_the_floor() -> None:
    result = {"phases": ["floor", "check", "saturation"], "floor": {"cpu_ms_per_request": 0.5},
              "check": {"cpu_ms_per_request": 0.6}, "saturation": {"cpu_ms_per_request": 4.5}}
    ratios = _ratios(result)
    assert ratios["check_over_floor"] == pytest.approx(1.2) and ratios["recommend_minus_floor_ms"] == pytest.approx(4.0)
    assert _ratios({"phases": ["check"], "check": {"cpu_ms_per_request": 0.6}})["check_over_floor"] is None
    assert "stream_over_unary" not in ratios
    streamed = _ratios(result | {"phases": ["saturation", "recommend_stream"], "recommend_stream": {"cpu_ms_per_request": 3.6}})
    assert streamed["stream_over_unary"] == pytest.approx(0.8)


def test_a_server_in_the_generators_scheduling_group_is_flagged() -> None:
    result = {"generator": "ghz", "target": "t", "server_pid": 1, "sessions": 1, "k": 10, "model_versions": {},
              "degraded": False, "phases": ["saturation"], "floor_cpu_ms": None, "saturation": _phase_row()}
    for shared, warned in ((True, 1), (False, 0), (None, 0)):
        warnings = [line for line in format_result(result | {"sched_group_shared": shared}).splitlines()
                    if "WARNING" in line]
        assert len(warnings) == warned and all("scheduling group" in w and "setsid" in w for w in warnings)


def test_the_floods_verdict_counts_refusals_by_either_generators_names_and_flags_the_rest() -> None:
    saturation = _phase_row(qps=500.0)
    ghz = {"saturation": saturation, "flood": _phase_row(qps=480.0, p99_ms=250.0, requests=1000, status_codes={
        "OK": 600, "ResourceExhausted": 380, "DeadlineExceeded": 20}, saturation_factor=2.0, offered_rate=1000.0)}
    verdict = _flood_verdict(ghz)
    assert verdict["flood_served_over_saturation"] == pytest.approx(0.96) and verdict["flood_p99_ms"] == 250.0
    assert (verdict["flood_refused"], verdict["flood_other_errors"]) == (380, 20)
    python = ghz | {"flood": ghz["flood"] | {"status_codes": {"OK": 600, "RESOURCE_EXHAUSTED": 400}}}
    assert (_flood_verdict(python)["flood_refused"], _flood_verdict(python)["flood_other_errors"]) == (400, 0)
    assert _flood_verdict({"saturation": saturation}) == {}
    head = {"generator": "ghz", "target": "t", "server_pid": 1, "sessions": 1, "k": 10, "model_versions": {},
            "degraded": False, "phases": ["saturation", "flood"], "floor_cpu_ms": None}
    line = format_result(head | ghz | verdict).splitlines()[-1]
    assert line == ("flood at 2 x saturation (1000/s offered): 0.96 of saturation answered (target >= 0.9), their "
                    "p99 250.0 ms (target <= 100); 380 refused with RESOURCE_EXHAUSTED, 20 other errors (target 0)")


@pytest.mark.parametrize("flood", [0.0, -2.0, float("nan"), float("inf")])
def test_a_flood_is_a_positive_multiple_of_saturation(flood: float) -> None:
    with pytest.raises(ConfigError, match="positive multiple"):
        ServeBenchConfig(flood=flood)

