"""ghz (https://ghz.sh), the Go load generator of ``bench serve``: pinned, installed, run, read.

``streamrec bench ghz-install`` runs ``go install github.com/bojand/ghz/cmd/ghz@v<GHZ_VERSION>`` (from
the Go module proxy) with ``GOBIN=<cache_dir>/ghz/v<GHZ_VERSION>``; the bench uses the binary found
there and falls back to its Python generator without it. Another version means another directory, so a
new pin never runs the old binary.

ghz learns the messages from a protoset (a serialized ``FileDescriptorSet``) written from the
descriptors this package already imports: the Recommender's and the health service's, whatever the
.proto files' paths. A run is a fixed count (``-n``, so no call is cut off at the end), ``-c``
concurrent workers over ``--connections`` connections, ``--rps`` for a fixed offered rate, the
requests taken from a JSON array in turn (``-D``); its ``-O json`` report is read by ``parse_report``.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamrec.errors import ConfigError, InfraError

__all__ = ["GHZ_MODULE", "GHZ_VERSION", "GhzRun", "ghz_path", "install_ghz", "parse_report", "run_ghz",
           "write_protoset"]

GHZ_MODULE = "github.com/bojand/ghz/cmd/ghz"
GHZ_VERSION = "0.120.0"


def ghz_path(cache_dir: Path) -> Path:
    return cache_dir / "ghz" / f"v{GHZ_VERSION}" / "ghz"


def install_ghz(cache_dir: Path, timeout_s: float = 900.0) -> Path:
    """``go install`` the pinned ghz into ``ghz_path``'s directory; its path."""
    go = shutil.which("go")
    if go is None:
        raise ConfigError("`go` is not on PATH: install Go (https://go.dev/dl/, 1.21 or later), then rerun "
                          "`streamrec bench ghz-install`; without ghz, `bench serve` uses its Python generator")
    target = ghz_path(cache_dir)
    target.parent.mkdir(parents=True, exist_ok=True)
    env = os.environ | {"GOBIN": str(target.parent.resolve())}
    done = subprocess.run([go, "install", f"{GHZ_MODULE}@v{GHZ_VERSION}"], env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    if done.returncode or not target.is_file():
        raise InfraError(f"`go install {GHZ_MODULE}@v{GHZ_VERSION}` failed ({done.returncode}); is the Go module "
                         f"proxy reachable (GOPROXY)?\n{done.stderr.strip()[-2000:]}")
    return target


def write_protoset(path: Path) -> Path:
    """The Recommender's and the health service's descriptors (and what they import) as one protoset."""
    from google.protobuf import descriptor_pb2
    from grpc_health.v1 import health_pb2

    from streamrec.serve.protos import load_stubs

    pb2, _ = load_stubs()
    files: dict[str, Any] = {}

    def add(fd: Any) -> None:
        if fd.name in files:
            return
        for dep in fd.dependencies:
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        files[fd.name] = proto

    add(pb2.DESCRIPTOR)
    add(health_pb2.DESCRIPTOR)
    path.write_bytes(descriptor_pb2.FileDescriptorSet(file=list(files.values())).SerializeToString())
    return path


@dataclass(frozen=True)
class GhzRun:
    target: str
    call: str  # "streamrec.v1.Recommender/Recommend", "grpc.health.v1.Health/Check"
    requests: Sequence[Mapping[str, Any]]  # in turn, as JSON
    count: int
    concurrency: int
    connections: int
    timeout_s: float
    rate: float | None = None  # None: as fast as the workers go (saturation); ghz takes whole calls a second
    duration_s: float | None = None  # instead of ``count`` (a warm-up)

    def argv(self, ghz: Path, protoset: Path, data: Path, out: Path) -> list[str]:
        amount = ["-z", f"{self.duration_s:g}s"] if self.duration_s else ["-n", str(self.count)]
        argv = [str(ghz), "--insecure", "--protoset", str(protoset), "--call", self.call, "-D", str(data), *amount,
                "-c", str(self.concurrency), "--connections", str(self.connections),
                "--timeout", f"{self.timeout_s * 1000:.0f}ms", "-O", "json", "-o", str(out)]
        if self.rate is not None:
            argv += ["--rps", str(max(1, round(self.rate)))]
        return [*argv, self.target]


def run_ghz(ghz: Path, run: GhzRun) -> dict[str, Any]:
    """One ghz run; its report read by ``parse_report``, with ghz's own CPU (``generator_cpu_s``): on the
    same cores as the server, what the load generator takes is what the server cannot have."""
    with tempfile.TemporaryDirectory(prefix="streamrec-ghz-") as tmp:
        protoset, data, out = Path(tmp) / "all.protoset", Path(tmp) / "data.json", Path(tmp) / "report.json"
        write_protoset(protoset)
        data.write_text(json.dumps(list(run.requests)))
        before = _children_cpu_s()
        done = subprocess.run(run.argv(ghz, protoset, data, out), capture_output=True, text=True, check=False)
        cpu = _children_cpu_s() - before  # subprocess.run has waited for ghz: its CPU is counted now
        if not out.is_file() or not out.stat().st_size:
            raise InfraError(f"ghz failed ({done.returncode}): {(done.stderr or done.stdout).strip()[-2000:]}")
        report = parse_report(json.loads(out.read_text()))
        return report | {"generator_cpu_s": round(cpu, 3),
                         "generator_cpu_ms_per_call": round(cpu / max(report["requests"], 1) * 1e3, 4)}


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def parse_report(report: Mapping[str, Any]) -> dict[str, Any]:
    """The figures of a ghz ``-O json`` report: times are nanoseconds there, milliseconds here. ``qps``
    counts the calls that ended OK (ghz's own ``rps`` counts errors too); ``errors`` every other call
    (deadline, refused, unavailable...), and ``status_codes`` says which."""
    latencies = {round(p["percentage"]): p["latency"] / 1e6 for p in report.get("latencyDistribution") or ()}
    codes = {str(k): int(v) for k, v in (report.get("statusCodeDistribution") or {}).items()}
    count = int(report["count"])
    return {
        "qps": round(codes.get("OK", 0) / max(report["total"] / 1e9, 1e-9), 1),  # answered, as the Python generator's
        "p50_ms": round(latencies.get(50, float("nan")), 3),
        "p90_ms": round(latencies.get(90, float("nan")), 3),
        "p99_ms": round(latencies.get(99, float("nan")), 3),
        "errors": count - codes.get("OK", 0),
        "requests": count,
        "status_codes": codes,
        "error_messages": {str(k): int(v) for k, v in (report.get("errorDistribution") or {}).items()},
        "elapsed_s": round(report["total"] / 1e9, 3),
    }
