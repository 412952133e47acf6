"""``streamrec bench serve``: where the server's CPU goes, per request, next to qps and latency, over loopback.

Real sessions: the last ``max_len`` interactions of randomly drawn users of the dataset, written to
Redis with the worker's own writer (``SessionWriter``), so the server reads them as it reads live
ones; and long ones, the last ``long_len`` (200) of users with at least that many, under their own prefix.

Phases, each ``seconds`` long (a fixed count of calls with ghz), in this order:

- ``floor``: ``Health/Check`` on the gRPC floor (``streamrec.bench.floor``, started here), saturation;
- ``check``: ``Health/Check`` on the server, its empty RPC, saturation;
- ``recommend_skip``: Recommend on a server started with ``STREAMREC_SERVE_SKIP_PIPELINE=1`` (the
  servicer and Redis without the pipeline), saturation; only when there is such a server;
- ``fixed_rate``: Recommend at ``rate``/s, open loop: request ``i`` is due at ``t0 + i / rate`` whatever
  happened before it, latency counted from the due time (no coordinated omission). ghz gets enough
  workers (``rate * timeout_s``) that they never hold the rate back within the deadline;
- ``saturation``: Recommend, ``concurrency`` in flight at all times; ``qps`` is the capacity;
- ``long_sessions``: Recommend on the long sessions, saturation;
- ``recommend_stream``: the same requests over ``RecommendStream``, ``concurrency`` in flight in all over
  ``STREAMS`` streams (one connection each), from the Python generator whatever ``generator`` says:
  ghz times a stream as a whole and does not read the answers, and each answer carries its own status.
  Latency is per request, from its write to its answer. Against ``saturation``, the same load, it
  tells what a call's overhead costs (``stream_over_unary``);
- ``flood`` (with ``flood``, last): Recommend at ``flood`` times the saturation phase's qps, open loop as
  ``fixed_rate``, so that "twice saturation" means the same on any machine. ``flood_served_over_saturation``,
  ``flood_p99_ms`` (of the answered calls), ``flood_refused`` (``RESOURCE_EXHAUSTED``) and
  ``flood_other_errors`` (anything else, a deadline passed included) are issue 16's load-shedding checks.

Each phase reports the server's CPU per request: the CPU time of the server's process tree over the
phase (``streamrec.bench.cpu``), divided by the requests of the phase (errors included: the server
worked on them too). ``cpu_shares`` says how the processes of a ``--processes`` server shared it:
the kernel hands each TCP connection to one process, so the load comes over ``channels`` connections
(16), enough that a process is rarely left with few (with 4, one run in 8 gives all four to one).
The server is the tree listening on the target's port, or ``server_pid``; the
bench may also start the servers itself (``start_server``). With the Python generator against a
server in the bench's own process (the tests' in-process server), the figure includes the generator.
``sched_group_shared`` says whether the server shares this process's CPU scheduling group, and so the
load generator's (``streamrec.bench.sched_group``). A server started by hand from the bench's own shell
does, and under overload its figures then measure the scheduler as much as the server: the bench warns.

The load comes from ghz (``streamrec.bench.ghz``) when it is given, else from an asyncio generator in
this process; ``generator`` in the JSON says which. With ghz, cold-start and degraded answers are
counted on a probe of 50 requests before each Recommend phase (ghz does not read the answers).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import math
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import grpc
import numpy as np

from streamrec.bench.cpu import blas_kernels, find_server, process_cpu_s
from streamrec.bench.sched_group import shares_group_with
from streamrec.errors import ConfigError, InfraError
from streamrec.serve.protos import load_stubs
from streamrec.settings import Settings
from streamrec.stats import percentile

__all__ = ["ServeBenchConfig", "format_result", "run_serve_bench", "store_sessions"]

pb2, pb2_grpc = load_stubs()

SESSION_PREFIX = "bench:sess-"
LONG_PREFIX = "bench:long-"
RECOMMEND_CALL = "streamrec.v1.Recommender/Recommend"
CHECK_CALL = "grpc.health.v1.Health/Check"
FLOOR_RATIO_TARGET = 1.2  # issue 16: the empty RPC within 1.2 times the floor
RECOMMEND_OVER_FLOOR_TARGET_MS = 1.0  # and a Recommend at most the floor plus 1 ms
FLOOD_SERVED_TARGET = 0.9  # at twice saturation, at least 90% of saturation answered
FLOOD_P99_TARGET_MS = 100.0  # within 100 ms at the p99, every other call refused with RESOURCE_EXHAUSTED
UNEVEN_SHARE = 0.75  # a process's share of a multi-process server's CPU that is worth a warning
PROBE = 50  # Recommend answers checked for cold start and degradation before a ghz phase
STREAMS = 8  # RecommendStream streams of the stream phase; with 8 connections, rarely all on one process


@dataclass(frozen=True)
class ServeBenchConfig:
    target: str = "127.0.0.1:50051"
    rate: float = 500.0
    seconds: float = 20.0
    concurrency: int = 32
    sessions: int = 2000
    max_len: int = 20
    long_len: int = 200  # items of the long sessions (their own phase); 0: no such phase
    k: int = 10
    dataset: str = "ml-1m"
    load_sessions: bool = True
    timeout_s: float = 1.0
    seed: int = 0
    # TCP connections, used in turn: a server of several processes (SO_REUSEPORT) shares out connections
    channels: int = 16
    ghz: Path | None = None  # the ghz binary; None: the Python generator
    server_pid: int | None = None  # None: the process tree that listens on the target's port
    skip_pipeline_target: str | None = None  # a server with STREAMREC_SERVE_SKIP_PIPELINE=1, if any
    skip_pipeline_pid: int | None = None
    floor: bool = True  # also start and measure the gRPC floor
    start_server: Path | None = None  # a registry: start both servers on it (target and pids ignored)
    processes: int = 1  # of the servers the bench starts
    flood: float | None = None  # a last phase at this many times the saturation phase's qps; None: none

    def __post_init__(self) -> None:
        if self.flood is not None and not (math.isfinite(self.flood) and self.flood > 0):
            raise ConfigError(f"the flood's rate is a positive multiple of saturation, got {self.flood}")


def store_sessions(settings: Settings, config: ServeBenchConfig, prefix: str = SESSION_PREFIX,
                   max_len: int | None = None, min_len: int = 0) -> list[str]:
    """Write up to ``config.sessions`` real sessions into Redis, the last ``max_len`` events (default
    ``config.max_len``) of users with at least ``min_len``; returns their ids."""
    from streamrec.data.datasets import load
    from streamrec.events.schema import encode_event
    from streamrec.stream.processor import Record, SessionWriter
    from streamrec.stream.session_store import offsets_key, partition_field

    max_len = config.max_len if max_len is None else max_len
    inter = load(config.dataset, settings.data_dir).interactions
    sizes = inter.groupby("user_id").size()
    users = np.sort(sizes.index[sizes >= min_len].to_numpy())
    rng = np.random.default_rng(config.seed)
    chosen = set(rng.choice(users, size=min(config.sessions, len(users)), replace=False).tolist())
    tails = inter[inter["user_id"].isin(chosen)].groupby("user_id", sort=True).tail(max_len)
    now = int(time.time() * 1000)
    records, ids = [], []
    for n, (user, rows) in enumerate(tails.groupby("user_id", sort=True)):
        sid = f"{prefix}{n}"
        ids.append(sid)
        for j, item in enumerate(rows["item_id"].astype(str)):
            records.append(Record("bench", 0, len(records), sid.encode(), encode_event({
                "event_id": f"{sid}-{j}", "session_id": sid, "item_id": item, "event_type": "click",
                "timestamp": now - 1000 * (len(rows) - j)})))

    async def write() -> None:
        async with SessionWriter(settings) as writer:
            # "bench" is a made-up partition whose offsets restart at 0 on every call: forget the last
            # call's, or the writer would skip this call's records as already applied
            await writer.client.hdel(offsets_key(settings.redis_prefix), partition_field("bench", 0))
            for lo in range(0, len(records), 1000):
                await writer.apply(records[lo:lo + 1000])

    asyncio.run(write())
    return ids


# ---------------------------------------------------------------- one phase, two generators

@dataclass(frozen=True)
class _Phase:
    name: str
    label: str
    target: str
    pid: int
    rpc: Literal["check", "recommend", "stream"]
    requests: Sequence[Mapping[str, Any]]  # as JSON, taken in turn
    rate: float | None = None  # None: saturation


def _summary(latencies_s: Sequence[float], errors: int, elapsed_s: float) -> dict[str, Any]:
    ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
    found = [percentile(ms, q) for q in (50, 90, 99)]
    p50, p90, p99 = (float("nan") if p is None else p for p in found)  # NaN: no request was answered
    return {"qps": round(len(ms) / elapsed_s, 1), "p50_ms": round(p50, 3), "p90_ms": round(p90, 3),
            "p99_ms": round(p99, 3), "errors": errors, "requests": len(ms) + errors}


class _Calls:
    """Round-robin over one stub per connection; for Recommend, counts the answers that did not run the
    pipeline: a cold start (the session expired from Redis: its TTL is STREAMREC_SESSION_TTL_S, or the
    server skips the pipeline) is not a figure of the full pipeline."""

    def __init__(self, channels: Sequence[grpc.aio.Channel], phase: _Phase) -> None:
        from grpc_health.v1 import health_pb2, health_pb2_grpc

        self.rpc = phase.rpc
        if phase.rpc == "check":
            self.stubs: list[Any] = [health_pb2_grpc.HealthStub(c).Check for c in channels]
            self.requests: list[Any] = [health_pb2.HealthCheckRequest(**r) for r in phase.requests]
        else:
            self.stubs = [pb2_grpc.RecommenderStub(c).Recommend for c in channels]
            self.requests = [pb2.RecommendRequest(**r) for r in phase.requests]
        self.cold_start = 0
        self.degraded = 0
        self.answers = 0

    async def __call__(self, i: int, timeout: float) -> None:
        response = await self.stubs[i % len(self.stubs)](self.requests[i % len(self.requests)], timeout=timeout)
        if self.rpc == "recommend":
            self.answers += 1
            self.cold_start += response.cold_start
            self.degraded += response.degraded


async def _fixed_rate(call: Callable[[int, float], Awaitable[None]], rate: float, n: int,
                      timeout_s: float) -> dict[str, Any]:
    latencies: list[float] = []
    codes: collections.Counter[str] = collections.Counter()
    clock = time.perf_counter  # uvloop's loop.time() ticks in whole milliseconds
    start = clock() + 0.05

    async def one(i: int, due: float) -> None:
        try:
            await call(i, timeout_s)
            latencies.append(clock() - due)
        except grpc.aio.AioRpcError as exc:
            codes[exc.code().name] += 1

    tasks = []
    for i in range(n):
        due = start + i / rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, due)))
    await asyncio.gather(*tasks)
    return {"offered_rate": rate} | _coded(latencies, codes, max(clock() - start, 1e-9))


async def _saturation(call: Callable[[int, float], Awaitable[None]], concurrency: int, seconds: float,
                      timeout_s: float) -> dict[str, Any]:
    latencies: list[float] = []
    codes: collections.Counter[str] = collections.Counter()
    clock = time.perf_counter
    end = clock() + seconds

    async def worker(w: int) -> None:
        i = w
        while clock() < end:
            t = clock()
            try:
                await call(i, timeout_s)
                latencies.append(clock() - t)
            except grpc.aio.AioRpcError as exc:
                codes[exc.code().name] += 1
            i += concurrency

    start = clock()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return {"concurrency": concurrency} | _coded(latencies, codes, clock() - start)


def _coded(latencies_s: Sequence[float], failed: Mapping[str, int], elapsed_s: float) -> dict[str, Any]:
    """``_summary`` with ``status_codes``: the answered calls as ``OK``, the rest by their status, as ghz reports."""
    codes = ({grpc.StatusCode.OK.name: len(latencies_s)} if latencies_s else {}) | dict(failed)
    return _summary(latencies_s, sum(failed.values()), elapsed_s) | {"status_codes": codes}


@contextlib.asynccontextmanager
async def _connections(target: str, n: int) -> Any:
    """``n`` channels to ``target``, each its own TCP connection (a local subchannel pool per channel:
    otherwise channels to one target share one connection), closed on exit."""
    channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(n)]
    try:
        yield channels
    finally:
        await asyncio.gather(*(c.close() for c in channels))


@contextlib.asynccontextmanager
async def _calls(phase: _Phase, config: ServeBenchConfig) -> Any:
    async with _connections(phase.target, max(config.channels, 1)) as channels:
        yield _Calls(channels, phase)


async def _python_phase(phase: _Phase, config: ServeBenchConfig) -> dict[str, Any]:
    async with _calls(phase, config) as call:
        for i in range(100):  # warm-up
            await call(i, 5.0)
        seen = (call.answers, call.cold_start, call.degraded)
        before = process_cpu_s(phase.pid)
        if phase.rate is not None:
            result = await _fixed_rate(call, phase.rate, int(phase.rate * config.seconds), config.timeout_s)
        else:
            result = await _saturation(call, config.concurrency, config.seconds, config.timeout_s)
        result |= _cpu_since(phase.pid, before)
        if phase.rpc == "recommend":
            result |= {"answers_checked": call.answers - seen[0], "cold_start": call.cold_start - seen[1],
                       "degraded": call.degraded - seen[2]}
    return result


async def _stream_phase(phase: _Phase, config: ServeBenchConfig) -> dict[str, Any]:
    """``config.concurrency`` requests in flight over ``STREAMS`` RecommendStream streams, for
    ``config.seconds`` after a warm-up; every answer read, its status counted."""
    requests = [pb2.RecommendRequest(**r) for r in phase.requests]
    streams = min(STREAMS, config.concurrency)
    window = math.ceil(config.concurrency / streams)
    clock = time.perf_counter
    latencies: list[float] = []
    codes: dict[str, int] = {}
    seen = {"answers_checked": 0, "cold_start": 0, "degraded": 0}

    def count(code: str, n: int = 1) -> None:
        codes[code] = codes.get(code, 0) + n

    def note(answer: Any, began: float) -> None:
        count(grpc.StatusCode.OK.name if answer.code == 0 else _code_name(answer.code))
        if answer.code == 0:
            latencies.append(clock() - began)
            seen["answers_checked"] += 1
            seen["cold_start"] += answer.response.cold_start
            seen["degraded"] += answer.response.degraded

    async def stream(stub: Any, first: int, until: float, record: bool) -> None:
        call = stub.RecommendStream()
        sent: collections.deque[float] = collections.deque()
        slots = asyncio.Semaphore(window)

        async def write() -> None:
            i = first
            while clock() < until:
                await slots.acquire()
                sent.append(clock())
                await call.write(requests[i % len(requests)])
                i += streams
            await call.done_writing()

        writer = asyncio.ensure_future(write())
        try:
            async for answer in call:
                began = sent.popleft()
                slots.release()
                if record:
                    note(answer, began)
        except grpc.aio.AioRpcError as exc:  # the stream ended whole (the server went away): its requests failed
            writer.cancel()
            if record:
                count(exc.code().name, len(sent))
            return
        await writer

    async with _connections(phase.target, streams) as channels:
        stubs = [pb2_grpc.RecommenderStub(c) for c in channels]
        warm = clock() + 1.0
        await asyncio.gather(*(stream(stub, s, warm, False) for s, stub in enumerate(stubs)))
        before = process_cpu_s(phase.pid)
        start = clock()
        await asyncio.gather(*(stream(stub, s, start + config.seconds, True) for s, stub in enumerate(stubs)))
        elapsed = clock() - start
        result = _cpu_since(phase.pid, before)
    errors = sum(n for code, n in codes.items() if code != grpc.StatusCode.OK.name)
    return ({"concurrency": config.concurrency, "streams": streams, "generator": "python"}
            | _summary(latencies, errors, elapsed) | {"status_codes": codes} | result | seen)


def _code_name(code: int) -> str:
    return next((c.name for c in grpc.StatusCode if c.value[0] == code), str(code))


async def _probe(phase: _Phase, config: ServeBenchConfig) -> dict[str, int]:
    async with _calls(phase, config) as call:
        for i in range(min(PROBE, len(phase.requests))):
            await call(i, 5.0)
        return {"answers_checked": call.answers, "cold_start": call.cold_start, "degraded": call.degraded}


def _ghz_phase(phase: _Phase, config: ServeBenchConfig, ghz: Path) -> dict[str, Any]:
    from streamrec.bench.ghz import GhzRun, run_ghz

    run = GhzRun(phase.target, CHECK_CALL if phase.rpc == "check" else RECOMMEND_CALL, phase.requests,
                 count=0, concurrency=config.concurrency,
                 connections=max(1, min(config.channels, config.concurrency)),
                 timeout_s=config.timeout_s, duration_s=1.0)
    probe = _run_loop(_probe(phase, config)) if phase.rpc == "recommend" else {}
    warm = run_ghz(ghz, run)  # warm-up, and the rate a saturation phase's count is taken from
    if phase.rate is not None:
        run = dataclasses.replace(run, count=int(phase.rate * config.seconds), rate=phase.rate, duration_s=None,
                                  concurrency=max(config.concurrency, math.ceil(phase.rate * config.timeout_s)))
    else:
        run = dataclasses.replace(run, count=max(config.concurrency, round(warm["qps"] * config.seconds)),
                                  duration_s=None)
    before = process_cpu_s(phase.pid)
    result = run_ghz(ghz, run) | _cpu_since(phase.pid, before)
    if phase.rate is not None:
        result = {"offered_rate": phase.rate, "workers": run.concurrency} | result
    else:
        result = {"concurrency": run.concurrency} | result
    return result | probe


def _cpu_since(root: int, before: Mapping[int, float]) -> dict[str, Any]:
    """The server's CPU seconds since ``before`` (``process_cpu_s``), and each process's share of them,
    largest first. The kernel hands each connection to one process of a ``--processes`` server
    (SO_REUSEPORT hashes it), so a few connections can leave a process idle: the shares show it."""
    after = process_cpu_s(root)
    spent = {pid: cpu - before.get(pid, 0.0) for pid, cpu in after.items()}
    total = sum(spent.values())
    shares = sorted((max(cpu, 0.0) / total for cpu in spent.values()), reverse=True) if total > 0 else []
    return {"cpu_s": total, "cpu_shares": [round(x, 3) for x in shares]}


def _run_loop(coro: Awaitable[Any]) -> Any:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    return uvloop.run(coro)  # type: ignore[arg-type]


def _run_phase(phase: _Phase, config: ServeBenchConfig) -> dict[str, Any]:
    if phase.rpc == "stream":
        result = _run_loop(_stream_phase(phase, config))
    else:
        result = _ghz_phase(phase, config, config.ghz) if config.ghz else _run_loop(_python_phase(phase, config))
    result["cpu_s"] = round(result["cpu_s"], 3)
    result["cpu_ms_per_request"] = round(1e3 * result["cpu_s"] / result["requests"], 4) if result["requests"] else None
    result["server_pid"] = phase.pid
    return result


# ---------------------------------------------------------------- servers: the floor, and ours when asked

@contextlib.contextmanager
def _floor() -> Iterator[tuple[str, int]]:
    """The floor server (``streamrec.bench.floor``) on a free port: its target and pid."""
    from streamrec.infra.processes import free_port
    from streamrec.serve.health_probe import check

    port = free_port()
    target = f"127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen([sys.executable, "-P", "-m", "streamrec.bench.floor", "--port", str(port)],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                with grpc.insecure_channel(target) as channel:
                    if check(channel, "", 1.0) == "SERVING":
                        break
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise InfraError(f"the floor server did not answer on {target}: "
                                     f"{log.read().decode(errors='replace')[-2000:]}")
                time.sleep(0.05)  # a poll's period, not a wait for a condition
            yield target, proc.pid
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


@dataclass(frozen=True)
class _Servers:
    target: str
    pid: int
    skip_target: str | None
    skip_pid: int | None


@contextlib.contextmanager
def _servers(settings: Settings, config: ServeBenchConfig) -> Iterator[_Servers]:
    """The servers to measure: started here on ``config.start_server`` (one normal, one skipping the
    pipeline, both in the bench's Redis settings), or the running ones named by the config."""
    if config.start_server is None:
        port = int(config.target.rsplit(":", 1)[1])
        pid = config.server_pid or find_server(port)
        skip_pid = None
        if config.skip_pipeline_target:
            skip_pid = config.skip_pipeline_pid or find_server(int(config.skip_pipeline_target.rsplit(":", 1)[1]))
        yield _Servers(config.target, pid, config.skip_pipeline_target, skip_pid)
        return
    from streamrec.bench.startup import ServerProcess, StartupBenchConfig

    env = settings.to_env()
    with tempfile.TemporaryDirectory(prefix="streamrec-bench-serve-") as tmp:
        started = []
        try:
            for name, extra in (("serve", {}), ("skip", {"STREAMREC_SERVE_SKIP_PIPELINE": "1"})):
                startup = StartupBenchConfig(registry=config.start_server, server_env=env | extra)
                server = ServerProcess(startup, config.processes, Path(tmp) / f"{name}.log")
                started.append(server)
                server.spawn()
            for server in started:  # both load at once
                server.wait_serving()
            pids = [s.proc.pid for s in started if s.proc is not None]
            yield _Servers(started[0].target, pids[0], started[1].target, pids[1])
        finally:
            for server in started:
                server.stop()


# ---------------------------------------------------------------- the bench

def _phases(config: ServeBenchConfig, servers: _Servers, floor: tuple[str, int] | None, ids: Sequence[str],
            long_ids: Sequence[str]) -> list[_Phase]:
    check = [{"service": ""}]
    recommend = [{"session_id": s, "k": config.k} for s in ids]
    phases = []
    if floor is not None:
        phases.append(_Phase("floor", "floor Check", floor[0], floor[1], "check", check))
    phases.append(_Phase("check", "Check (empty RPC)", servers.target, servers.pid, "check", check))
    if servers.skip_target is not None and servers.skip_pid is not None:
        phases.append(_Phase("recommend_skip", "Recommend, no pipeline", servers.skip_target, servers.skip_pid,
                             "recommend", recommend))
    phases.append(_Phase("fixed_rate", f"Recommend {config.rate:g}/s", servers.target, servers.pid, "recommend",
                         recommend, rate=config.rate))
    phases.append(_Phase("saturation", "Recommend", servers.target, servers.pid, "recommend", recommend))
    phases.append(_Phase("recommend_stream", "RecommendStream", servers.target, servers.pid, "stream", recommend))
    if long_ids:
        phases.append(_Phase("long_sessions", f"Recommend {config.long_len} items", servers.target, servers.pid,
                             "recommend", [{"session_id": s, "k": config.k} for s in long_ids]))
    return phases


def _first(target: str, session_id: str, k: int) -> Any:
    """One Recommend, that fails fast when no server is there; its answer names the models."""
    with grpc.insecure_channel(target) as channel:
        try:
            return pb2_grpc.RecommenderStub(channel).Recommend(pb2.RecommendRequest(session_id=session_id, k=k),
                                                               timeout=5.0)
        except grpc.RpcError as exc:
            raise InfraError(f"no Recommend answer from {target}: {exc.code().name}; is the server running "  # type: ignore[attr-defined]
                             "(streamrec serve), or use --start-server") from None


def _ratios(result: dict[str, Any]) -> dict[str, Any]:
    cpu = {name: result[name]["cpu_ms_per_request"] for name in result["phases"]}
    floor = cpu.get("floor")
    out: dict[str, Any] = {"floor_cpu_ms": floor, "check_over_floor": None, "recommend_minus_floor_ms": None,
                           "targets": {"check_over_floor": FLOOR_RATIO_TARGET,
                                       "recommend_minus_floor_ms": RECOMMEND_OVER_FLOOR_TARGET_MS}}
    if floor:
        out["check_over_floor"] = round(cpu["check"] / floor, 3) if cpu.get("check") is not None else None
        if cpu.get("saturation") is not None:
            out["recommend_minus_floor_ms"] = round(cpu["saturation"] - floor, 4)
    if cpu.get("saturation") and cpu.get("recommend_stream") is not None:
        out["stream_over_unary"] = round(cpu["recommend_stream"] / cpu["saturation"], 3)
    return out


def _code_key(name: str) -> str:
    """ghz names a status ``ResourceExhausted``, grpc ``RESOURCE_EXHAUSTED``: one key for both."""
    return name.replace("_", "").lower()


def _flood_verdict(result: Mapping[str, Any]) -> dict[str, Any]:
    """Issue 16's checks of the ``flood`` phase, against the saturation phase of the same run: the share of
    saturation answered, the p99 of the answered calls, and how every other call ended: refused
    with ``RESOURCE_EXHAUSTED`` (``flood_refused``), or anything else, a deadline passed included
    (``flood_other_errors``, which should be 0)."""
    if "flood" not in result:
        return {}
    flood, saturation = result["flood"], result["saturation"]["qps"]
    codes: collections.Counter[str] = collections.Counter()
    for name, n in flood["status_codes"].items():
        codes[_code_key(name)] += n
    refused = codes[_code_key(grpc.StatusCode.RESOURCE_EXHAUSTED.name)]
    answered = codes[_code_key(grpc.StatusCode.OK.name)]
    return {"flood_served_over_saturation": round(flood["qps"] / saturation, 3), "flood_p99_ms": flood["p99_ms"],
            "flood_refused": refused, "flood_other_errors": flood["requests"] - answered - refused,
            "flood_targets": {"served_over_saturation": FLOOD_SERVED_TARGET, "p99_ms": FLOOD_P99_TARGET_MS,
                              "other_errors": 0}}


def run_serve_bench(settings: Settings, config: ServeBenchConfig) -> dict[str, Any]:
    if config.load_sessions:
        ids = store_sessions(settings, config)
        long_ids = (store_sessions(settings, config, LONG_PREFIX, config.long_len, config.long_len)
                    if config.long_len else [])
    else:
        ids = [f"{SESSION_PREFIX}{i}" for i in range(config.sessions)]
        long_ids = []  # how many were stored is not known
    if not ids:
        raise ConfigError(f"no session to ask for: the dataset {config.dataset} gave none")
    with _servers(settings, config) as servers, \
            (_floor() if config.floor else contextlib.nullcontext()) as floor:
        first = _first(servers.target, ids[0], config.k)
        phases = _phases(config, servers, floor, ids, long_ids)
        result: dict[str, Any] = {
            "generator": f"ghz {_ghz_version()}" if config.ghz else "python", "target": servers.target,
            "server_pid": servers.pid, "skip_pipeline_target": servers.skip_target,
            "processes": config.processes if config.start_server else None,
            "listeners": settings.serve_listeners if config.start_server else None,  # STREAMREC_SERVE_LISTENERS
            "sessions": len(ids), "sessions_long": len(long_ids), "long_len": config.long_len, "k": config.k,
            "seconds": config.seconds, "model_versions": dict(first.model_versions), "degraded": first.degraded,
            "blas": blas_kernels(), "sched_group_shared": shares_group_with(servers.pid),
            "phases": [p.name for p in phases]}
        for phase in phases:
            result[phase.name] = {"label": phase.label} | _run_phase(phase, config)
        saturation = result.get("saturation", {}).get("qps")
        if config.flood is not None and saturation:
            # last, so that what a flood leaves behind (a backlog, Redis's state) touches no other phase
            flood = _Phase("flood", f"Recommend {config.flood:g} x sat.", servers.target, servers.pid, "recommend",
                           next(p.requests for p in phases if p.name == "saturation"),
                           rate=float(max(1, round(config.flood * saturation))))  # whole, as ghz takes them
            result["phases"].append(flood.name)
            result[flood.name] = {"label": flood.label, "saturation_factor": config.flood} | _run_phase(flood, config)
    return result | _ratios(result) | _flood_verdict(result)


def _ghz_version() -> str:
    from streamrec.bench.ghz import GHZ_VERSION

    return GHZ_VERSION


def format_result(result: dict[str, Any]) -> str:
    layout = (f", {result['processes']} processes x {result['listeners']} listeners"
              if result.get("listeners") is not None else "")
    lines = [f"{result['generator']} against {result['target']} (server pid {result['server_pid']}{layout}), "
             f"{result['sessions']} sessions, k={result['k']}, models {result['model_versions']}"
             + (" [DEGRADED]" if result["degraded"] else "") + f"; numpy's BLAS here: {result.get('blas', '?')}"]
    head = (f"{'phase':16} {'calls':24} {'load':>10} {'qps':>9} {'p50_ms':>8} {'p90_ms':>8} {'p99_ms':>8} "
            f"{'errors':>7} {'cpu_ms/req':>10} {'ghz_ms/req':>10}")
    if result.get("sched_group_shared"):
        lines.append("WARNING: the server shares this process's CPU scheduling group, and so the load generator's: "
                     "under overload it then answers far fewer calls for the same CPU (streamrec.bench.sched_group "
                     "has the figures). Start it in a session of its own (setsid), a container, or with "
                     "--start-server")
    lines += [head, "-" * len(head)]
    for name in result["phases"]:
        r = result[name]
        load = f"{r['offered_rate']:g}/s" if "offered_rate" in r else f"c={r['concurrency']}"
        cpu = "-" if r["cpu_ms_per_request"] is None else f"{r['cpu_ms_per_request']:.3f}"
        generator = f"{r['generator_cpu_ms_per_call']:.3f}" if "generator_cpu_ms_per_call" in r else "-"
        lines.append(f"{name:16} {r['label']:24} {load:>10} {r['qps']:9.1f} {r['p50_ms']:8.2f} {r['p90_ms']:8.2f} "
                     f"{r['p99_ms']:8.2f} {r['errors']:7d} {cpu:>10} {generator:>10}")
        shares = r.get("cpu_shares") or []
        if len(shares) > 1 and shares[0] > UNEVEN_SHARE:
            lines.append(f"  WARNING: one server process did {shares[0]:.0%} of the work: the connections landed "
                         "unevenly on the processes (use more --channels)")
        if name != "recommend_skip" and (r.get("cold_start") or r.get("degraded")):
            lines.append(f"  WARNING: {r['cold_start']} cold-start and {r['degraded']} degraded answers of "
                         f"{r['answers_checked']} checked: not the full pipeline (sessions expired? run without "
                         "--no-load)")
    if result["floor_cpu_ms"]:
        if result["check_over_floor"] is not None:
            lines.append(f"empty RPC / floor: {result['check_over_floor']:.2f} (target <= "
                         f"{result['targets']['check_over_floor']:g})")
        if result["recommend_minus_floor_ms"] is not None:
            lines.append(f"Recommend - floor: {result['recommend_minus_floor_ms']:.3f} ms of CPU (target <= "
                         f"{result['targets']['recommend_minus_floor_ms']:g} ms)")
    if result.get("stream_over_unary") is not None:
        lines.append(f"RecommendStream / Recommend, CPU per request at the same load: {result['stream_over_unary']:.2f}")
    if "flood_served_over_saturation" in result:
        flood, targets = result["flood"], result["flood_targets"]
        lines.append(f"flood at {flood['saturation_factor']:g} x saturation ({flood['offered_rate']:g}/s offered): "
                     f"{result['flood_served_over_saturation']:.2f} of saturation answered (target >= "
                     f"{targets['served_over_saturation']:g}), their p99 {result['flood_p99_ms']:.1f} ms (target <= "
                     f"{targets['p99_ms']:g}); {result['flood_refused']} refused with RESOURCE_EXHAUSTED, "
                     f"{result['flood_other_errors']} other errors (target 0)")
    return "\n".join(lines)
