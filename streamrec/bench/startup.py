"""``streamrec bench startup``: how long a server takes to serve a registry, what memory it holds, and
the size of the release on disk (issue 15, point 4).

The bench treats the server as a black box: it knows the command line, the gRPC health service and
the operating system, never how the server loads. So the same bench measures an older checkout of
the server (``--server-pythonpath``: the "before" figures) and the current one.

Protocol, for each ``--processes N`` and ``--runs R`` times (the first run of each N is the cold one):
- Spawn ``<this python> -P -m streamrec serve --registry DIR --port <free port> --processes N`` in a
  session of its own, its output in a temporary log. The environment is the bench's, plus
  ``STREAMREC_METRICS_PORT=0`` (no metrics port to collide), ``STREAMREC_GRPC_HOST=127.0.0.1`` and
  no ``STREAMREC_TLS_*`` (the bench calls over plaintext loopback) and, with ``--server-pythonpath DIR``,
  ``DIR`` in front of ``PYTHONPATH``. ``-P`` keeps the current directory off ``sys.path``, so that
  the checkout on ``PYTHONPATH`` is the one that serves; the report names the ``streamrec`` package
  the child imports (``server_code``).
- Every 20 ms (on a fixed schedule from the spawn), ``grpc.health.v1.Health/Check`` over a fresh
  connection (a channel of its own: no reconnect backoff, and with N > 1 each connection lands on
  a process the kernel picks by SO_REUSEPORT's hash).
  ``listening_s``: spawn until the server as a whole (service ``""``) first answers SERVING.
  ``serving_s``: spawn until ``streamrec.v1.Recommender`` answers SERVING for good: the time of the
  first answer of an unbroken run of SERVING answers. With N > 1 that run must also hold, once N
  processes of the tree hold a listening socket on the port (``/proc/net/tcp*`` and the processes'
  fds), ``serving_streak(N)`` answers: enough fresh connections that a process still loading would
  have been asked with probability >= 99.9 %.
- Memory, right after: the server process and all its descendants (parent pids read from
  ``/proc/*/stat``), each one's ``Rss``, ``Pss`` and private (USS: ``Private_Clean`` +
  ``Private_Dirty``) from ``/proc/<pid>/smaps_rollup``. ``pss_total_mb`` sums the PSS: a page shared by
  k processes counts 1/k in each, so once over the tree (pages shared with processes outside it,
  the bench's own shared libraries say, count only their share: the total errs on the low side by
  that). The multiprocessing helpers (the resource tracker) are in the tree and counted; each
  process has a ``role``.
- One ``Recommend`` (an unknown session, k=10) must answer; then SIGTERM to the server, which stops
  its processes, and a wait until every process of the tree is gone (SIGKILL to the session after
  ``stop_timeout_s``). The next run starts from nothing.

"Cold" means the first start of N by this bench, not an empty page cache (dropping it needs root):
a registry read just before (by the trainer, an earlier bench) is in memory already.

Summary per N: ``listening_s`` and ``serving_s`` of the first run and the median of the others
("after the first load"); the memory of the run whose ``pss_total_mb`` is the lower median of the
others (the first run when R = 1), per process and in total; ``second_process_adds`` =
(pss_total(2) - pss_total(1)) / pss_total(1) when N = 1 and N = 2 were both measured.

Release size: the ranker version ``CURRENT`` points to and every member its manifest names
(``streamrec.retrain.releases.release_of``), each the sum of the file sizes under
``<registry>/<name>/<version>/``.
"""

from __future__ import annotations

import math
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamrec.errors import ConfigError, InfraError
from streamrec.infra.processes import free_port

__all__ = ["ProcessMemory", "RunResult", "ServerProcess", "StartupBenchConfig", "descendants", "fd_links",
           "first_and_rest", "format_startup", "listening_inodes", "parent_of", "process_tree", "read_proc",
           "release_sizes", "role_of", "run_startup_bench", "serving_streak", "smaps_rollup", "summarize"]

SERVER_SERVICE = ""  # the health service of the server as a whole: SERVING once it listens
MB = 1024 * 1024


@dataclass(frozen=True)
class StartupBenchConfig:
    registry: Path
    processes: tuple[int, ...] = (1, 2)
    runs: int = 3
    server_pythonpath: Path | None = None
    poll_s: float = 0.02
    timeout_s: float = 600.0  # spawn until SERVING, per run
    stop_timeout_s: float = 60.0  # SIGTERM until the whole tree is gone, then SIGKILL
    # RecommendForSequence requests sent once SERVING, before memory is read: a process's pages that
    # serving writes to stop being shared, so memory at rest would flatter a forked process
    warm_requests: int = 0
    python: str = field(default_factory=lambda: sys.executable)
    # added to the server's environment (bench serve: the Redis settings, STREAMREC_SERVE_SKIP_PIPELINE)
    server_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    role: str
    rss_kb: int
    pss_kb: int
    uss_kb: int


@dataclass(frozen=True)
class RunResult:
    processes: int
    listening_s: float
    serving_s: float
    memory: tuple[ProcessMemory, ...]
    answered: str  # "" when Recommend answered, else why not
    items: int = 0
    degraded: bool = False

    @property
    def pss_total_kb(self) -> int:
        return sum(m.pss_kb for m in self.memory)


# ---- /proc, pure parts first ----

def smaps_rollup(text: str) -> dict[str, int]:
    """The ``Name: <n> kB`` fields of ``/proc/<pid>/smaps_rollup``, in kB (the header line is skipped)."""
    fields = {}
    for line in text.splitlines():
        name, sep, rest = line.partition(":")
        parts = rest.split()
        if sep and len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            fields[name.strip()] = int(parts[0])
    return fields


def parent_of(stat: str) -> int:
    """The parent pid in ``/proc/<pid>/stat``: the command name may hold spaces and parentheses, so the
    fields are counted after the last ``)`` (state, then ppid)."""
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int, parents: Mapping[int, int]) -> list[int]:
    """Every process below ``root`` in the ``pid -> ppid`` map, parents before children, by pid within a level."""
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    found, level = [], [root]
    while level:
        level = sorted(c for p in level for c in children.get(p, ()) if c != root and c not in found)
        found.extend(level)
    return found


def role_of(cmdline: Sequence[str], *, root: bool) -> str:
    """What a process of the server's tree is, from its command line (for the report's reader)."""
    text = " ".join(cmdline)
    if root:
        return "server"
    if "multiprocessing.spawn" in text or "multiprocessing.forkserver" in text:
        return "spawned"
    if "resource_tracker" in text:
        return "resource_tracker"
    if "streamrec" in text and " serve" in f" {text}":
        return "forked"  # the same command line as the server: forked from it (serve --processes)
    return Path(cmdline[0]).name if cmdline else "?"


def listening_inodes(tcp_table: str, port: int) -> set[int]:
    """Socket inodes that LISTEN on ``port`` in a ``/proc/net/tcp`` or ``tcp6`` table (any address)."""
    inodes = set()
    for line in tcp_table.splitlines()[1:]:
        f = line.split()
        if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(int(f[9]))
    return inodes


def serving_streak(processes: int, miss: float = 1e-3) -> int:
    """Fresh connections in a row that all say SERVING before one believes that all ``processes`` do: one
    still loading is missed by each connection with probability 1 - 1/N (the kernel's hash spreads them)."""
    if processes <= 1:
        return 1
    return math.ceil(math.log(miss) / math.log(1 - 1 / processes))


def read_proc(path: str) -> str | None:
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:  # the process is gone, or not ours to read
        return None


def _parents() -> dict[int, int]:
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := read_proc(f"/proc/{entry}/stat")) is not None:
            parents[int(entry)] = parent_of(stat)
    return parents


def process_tree(root: int) -> list[int]:
    return [root, *descendants(root, _parents())]


def _memory(root: int) -> tuple[ProcessMemory, ...]:
    rows = []
    for pid in process_tree(root):
        text = read_proc(f"/proc/{pid}/smaps_rollup")
        cmdline = (read_proc(f"/proc/{pid}/cmdline") or "").split("\0")
        if not text:
            continue
        f = smaps_rollup(text)
        rows.append(ProcessMemory(pid, role_of([c for c in cmdline if c], root=pid == root), f.get("Rss", 0),
                                  f.get("Pss", 0), f.get("Private_Clean", 0) + f.get("Private_Dirty", 0)))
    return tuple(rows)


def _listeners(root: int, port: int) -> int:
    """How many processes of the tree hold a socket listening on ``port``."""
    inodes = set().union(*(listening_inodes(read_proc(f"/proc/net/{t}") or "", port) for t in ("tcp", "tcp6")))
    return sum(any(link.startswith("socket:[") and int(link[8:-1]) in inodes for link in fd_links(pid))
               for pid in process_tree(root))


def fd_links(pid: int) -> Iterator[str]:
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return
    for fd in fds:
        try:
            yield os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile (the listing's own fd, for one)
            continue


def _alive(pid: int) -> bool:
    stat = read_proc(f"/proc/{pid}/stat")
    return stat is not None and stat.rsplit(")", 1)[1].split()[0] != "Z"


# ---- release size ----

def _dir_bytes(directory: Path) -> tuple[int, int]:
    """Total size and count of the regular files under ``directory`` (links are not followed)."""
    total = files = 0
    for base, _, names in os.walk(directory):
        for name in names:
            st = os.lstat(os.path.join(base, name))
            if not os.path.islink(os.path.join(base, name)):
                total, files = total + st.st_size, files + 1
    return total, files


def release_sizes(registry: Path) -> dict[str, Any]:
    """Per member of the current release (``release_of``): its version, bytes and files; and the total."""
    from streamrec import registry as reg
    from streamrec.retrain.releases import release_of

    release = release_of(registry)
    if not release:
        raise ConfigError(f"no CURRENT {reg.RANKER} under {registry}: nothing to serve. Run `streamrec train-ranker` "
                          "first, or give --registry")
    members = {}
    for name, version in sorted(release.items()):
        directory = reg.version_dir(registry, name, version)
        if not directory.is_dir():
            raise ConfigError(f"the release names {name} {version}, but {directory} is missing")
        size, files = _dir_bytes(directory)
        members[name] = {"version": version, "bytes": size, "files": files}
    return {"members": members, "total_bytes": sum(m["bytes"] for m in members.values())}


# ---- summary ----

def first_and_rest(values: Sequence[float]) -> tuple[float, float | None]:
    """The first (cold) value and the median of the others (None when there is only one)."""
    if not values:
        raise ValueError("no runs")
    return values[0], (statistics.median(values[1:]) if len(values) > 1 else None)


def _mb(kb: int) -> float:
    return round(kb / 1024, 1)


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def summarize(runs: Sequence[RunResult]) -> dict[str, Any]:
    """The figures of one processes count (its runs in order, the first one cold)."""
    listening, listening_rest = first_and_rest([r.listening_s for r in runs])
    serving, serving_rest = first_and_rest([r.serving_s for r in runs])
    rest = range(1, len(runs)) if len(runs) > 1 else range(1)
    chosen = statistics.median_low([runs[i].pss_total_kb for i in rest])
    memory_run = next(i for i in rest if runs[i].pss_total_kb == chosen)
    m = runs[memory_run].memory
    return {
        "listening_s_first": _round(listening),
        "listening_s_rest": _round(listening_rest),
        "serving_s_first": _round(serving),
        "serving_s_rest": _round(serving_rest),
        "memory_run": memory_run,
        "roles": [p.role for p in m],
        "rss_mb": [_mb(p.rss_kb) for p in m],
        "pss_mb": [_mb(p.pss_kb) for p in m],
        "uss_mb": [_mb(p.uss_kb) for p in m],
        "pss_total_mb": _mb(runs[memory_run].pss_total_kb),
        "pss_total_mb_first": _mb(runs[0].pss_total_kb),
        "answered": all(not r.answered for r in runs),
        "runs": [{"listening_s": _round(r.listening_s), "serving_s": _round(r.serving_s),
                  "pss_total_mb": _mb(r.pss_total_kb), "answered": r.answered or "yes", "items": r.items,
                  "degraded": r.degraded} for r in runs],
    }


def _report(config: StartupBenchConfig, server_code: str, release: dict[str, Any],
            runs: Mapping[int, Sequence[RunResult]]) -> dict[str, Any]:
    per = {str(n): summarize(rs) for n, rs in runs.items()}
    report: dict[str, Any] = {
        "registry": str(config.registry),
        "server_code": server_code,
        "server_pythonpath": str(config.server_pythonpath) if config.server_pythonpath else None,
        "runs": config.runs,
        "warm_requests": config.warm_requests,
        "poll_ms": round(config.poll_s * 1000),
        "release": release["members"],
        "release_total_mb": round(release["total_bytes"] / MB, 2),
        "processes": per,
    }
    if "1" in per and "2" in per:
        one, two = per["1"]["pss_total_mb"], per["2"]["pss_total_mb"]
        report["second_process_adds"] = round((two - one) / one, 3) if one else None
    return report


# ---- the runs ----

def _child_env(config: StartupBenchConfig) -> dict[str, str]:
    env = {k: v for k, v in {**os.environ, **config.server_env}.items()
           if not k.startswith("STREAMREC_TLS_")}  # the bench speaks plaintext
    env.update(STREAMREC_METRICS_PORT="0", STREAMREC_GRPC_HOST="127.0.0.1")
    if config.server_pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(config.server_pythonpath.resolve()),
                                                        env.get("PYTHONPATH", "")) if p)
    return env


def _server_code(config: StartupBenchConfig) -> str:
    """Where the server's ``streamrec`` package comes from, asked of an interpreter started as the server is."""
    done = subprocess.run([config.python, "-P", "-c", "import streamrec; print(streamrec.__file__)"],
                          check=False, env=_child_env(config), capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise ConfigError(f"the server's interpreter cannot import streamrec: {done.stderr.strip()[-500:]}")
    return str(Path(done.stdout.strip()).parent)


def _health(target: str, service: str, timeout_s: float = 1.0) -> str:
    """One Check on a connection of its own (no shared subchannel: each poll is a new TCP connection)."""
    import grpc

    from streamrec.serve.health_probe import check

    with grpc.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)]) as channel:
        return check(channel, service, timeout_s)


def _ticks(start: float, period_s: float) -> Iterator[None]:
    """Wait for the next tick of a fixed schedule from ``start`` (a late tick runs at once, the schedule stays)."""
    k = 0
    while True:
        k += 1
        delay = start + k * period_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        yield


def _log_tail(log: Path, lines: int = 20) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.exists() else "(no log)"


class ServerProcess:
    """One ``streamrec serve`` child, in a session of its own so that a stuck tree can be killed whole."""

    def __init__(self, config: StartupBenchConfig, processes: int, log: Path) -> None:
        self.config, self.processes, self.log = config, processes, log
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        self.started = 0.0
        self.proc: subprocess.Popen[bytes] | None = None
        self.tree: list[int] = []
        self._ticks = _ticks(time.perf_counter(), config.poll_s)

    def spawn(self) -> None:
        argv = [self.config.python, "-P", "-m", "streamrec", "serve", "--registry", str(self.config.registry.resolve()),
                "--port", str(self.port), "--processes", str(self.processes)]
        with open(self.log, "ab") as out:
            self.started = time.perf_counter()
            self.proc = subprocess.Popen(argv, env=_child_env(self.config), stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def _check_alive(self, waiting_for: str) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise InfraError(f"the server exited ({self.proc.returncode}) before {waiting_for}:\n{_log_tail(self.log)}")
        if time.perf_counter() - self.started > self.config.timeout_s:
            raise InfraError(f"the server was not {waiting_for} after {self.config.timeout_s:.0f}s:\n"
                             f"{_log_tail(self.log)}")

    def wait_listening(self) -> float:
        """Seconds from the spawn until the server as a whole answers SERVING (it listens)."""
        self._ticks = _ticks(self.started, self.config.poll_s)
        while True:
            next(self._ticks)
            self._check_alive("listening")
            if _health(self.target, SERVER_SERVICE) == "SERVING":
                return time.perf_counter() - self.started

    def wait_serving(self) -> float:
        """Seconds from the spawn until the readiness service is SERVING for good (see the protocol)."""
        from streamrec.serve.health_probe import READINESS_SERVICE

        assert self.proc is not None
        need = serving_streak(self.processes)
        all_listen = self.processes == 1
        since: float | None = None
        streak = 0
        while True:
            self._check_alive("serving")
            status = _health(self.target, READINESS_SERVICE)
            answered = time.perf_counter() - self.started
            if status != "SERVING":
                since, streak = None, 0
            else:
                since = answered if since is None else since
                all_listen = all_listen or _listeners(self.proc.pid, self.port) >= self.processes
                streak += all_listen
                if streak >= need:
                    return since
            next(self._ticks)

    def warm(self, n: int, vocab: Sequence[str], channels: int = 8) -> None:
        """``n`` RecommendForSequence requests of 5 random known items, over ``channels`` connections
        (so that the kernel spreads them over the processes)."""
        import random

        from streamrec.serve.client import open_channel, pb2, pb2_grpc

        rng = random.Random(0)
        opened = [open_channel(self.target) for _ in range(channels)]
        try:
            stubs = [pb2_grpc.RecommenderStub(c) for c in opened]
            for i in range(n):
                request = pb2.RecommendForSequenceRequest(item_ids=rng.sample(list(vocab[1:]), 5), k=10)
                stubs[i % channels].RecommendForSequence(request, timeout=10.0)
        finally:
            for channel in opened:
                channel.close()

    def recommend(self) -> tuple[str, int, bool]:
        from streamrec.serve.client import open_channel, recommend

        try:
            with open_channel(self.target) as channel:
                response = recommend(channel, "bench-startup", 10, timeout_s=10.0)
        except ConfigError as exc:
            return str(exc), 0, False
        return "", len(response.items), bool(response.degraded)

    def stop(self) -> None:
        """SIGTERM to the server (it stops its own processes), then wait until the whole tree is gone."""
        if self.proc is None:
            return
        tree = self.tree or process_tree(self.proc.pid)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.config.stop_timeout_s
        try:
            self.proc.wait(self.config.stop_timeout_s)
        except subprocess.TimeoutExpired:
            pass
        while any(_alive(p) for p in tree[1:]) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.proc.poll() is None or any(_alive(p) for p in tree[1:]):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)  # the session the bench created for this server
            except ProcessLookupError:
                pass
            self.proc.wait(10)


def _one_run(config: StartupBenchConfig, processes: int, log: Path) -> RunResult:
    server = ServerProcess(config, processes, log)
    try:
        server.spawn()
        listening = server.wait_listening()
        serving = server.wait_serving()
        assert server.proc is not None
        server.tree = process_tree(server.proc.pid)
        if config.warm_requests:
            server.warm(config.warm_requests, _vocab(config.registry))
        memory = _memory(server.proc.pid)
        answered, items, degraded = server.recommend()
    finally:
        server.stop()
    return RunResult(processes, listening, serving, memory, answered, items, degraded)


def _vocab(registry: Path) -> list[str]:
    from streamrec import registry as reg

    directory = reg.version_dir(registry, reg.RANKER, str(reg.read_pointer(registry, reg.RANKER)))
    return reg.read_vocab(directory, reg.read_manifest(directory)) or []


def run_startup_bench(config: StartupBenchConfig, say: Callable[[str], None] = lambda line: None) -> dict[str, Any]:
    """Every run of every processes count, one after the other; the report (see the protocol)."""
    if config.runs < 1 or not config.processes or min(config.processes) < 1:
        raise ConfigError("bench startup needs --runs >= 1 and --processes counts >= 1")
    release = release_sizes(config.registry)
    server_code = _server_code(config)
    say(f"server code: {server_code}; release {release['total_bytes'] / MB:.1f} MB on disk")
    runs: dict[int, list[RunResult]] = {}
    with tempfile.TemporaryDirectory(prefix="streamrec-bench-startup-") as tmp:
        for n in dict.fromkeys(config.processes):
            for i in range(config.runs):
                result = _one_run(config, n, Path(tmp) / f"serve-{n}-{i}.log")
                runs.setdefault(n, []).append(result)
                say(f"--processes {n}, run {i + 1}/{config.runs}: listening {result.listening_s:.2f} s, serving "
                    f"{result.serving_s:.2f} s, PSS {_mb(result.pss_total_kb):,.0f} MB over "
                    f"{len(result.memory)} process(es), Recommend: {result.answered or 'answered'}")
    return _report(config, server_code, release, runs)


def format_startup(report: Mapping[str, Any]) -> str:
    def s(value: float | None) -> str:
        return "-" if value is None else f"{value:.2f}"

    head = (f"{'processes':>9} {'listen s':>9} {'(rest)':>7} {'serving s':>9} {'(rest)':>7} {'PSS total MB':>12} "
            f"{'per process: role RSS/PSS/USS MB':<40}")
    lines = [(f"server {report['server_code']}, registry {report['registry']}, {report['runs']} run(s) per count "
              f"(the first cold; (rest) = median of the others), health polled every {report['poll_ms']} ms"),
             head, "-" * len(head)]
    for n, r in report["processes"].items():
        per = ", ".join(f"{role} {rss:,.0f}/{pss:,.0f}/{uss:,.0f}"
                        for role, rss, pss, uss in zip(r["roles"], r["rss_mb"], r["pss_mb"], r["uss_mb"], strict=True))
        lines.append(f"{n:>9} {s(r['listening_s_first']):>9} {s(r['listening_s_rest']):>7} "
                     f"{s(r['serving_s_first']):>9} {s(r['serving_s_rest']):>7} {r['pss_total_mb']:>12,.1f} {per}")
    if report.get("second_process_adds") is not None:
        lines.append(f"the second process adds {report['second_process_adds']:.1%} of one process's PSS")
    lines.append(f"release on disk: {report['release_total_mb']:,.2f} MB: " + ", ".join(
        f"{name} {m['version']} {m['bytes'] / MB:,.2f} MB" for name, m in report["release"].items()))
    if not all(r["answered"] for r in report["processes"].values()):
        lines.append("Recommend did NOT answer in some run: see runs[].answered in the JSON")
    return "\n".join(lines)
