"""``streamrec bench serve``: Recommend latency and throughput of a running server, over loopback.

Real sessions: the last ``max_len`` interactions of randomly drawn users of the dataset, written to
Redis with the worker's own writer (``SessionWriter``), so the server reads them as it reads live
ones. Two phases, each ``seconds`` long, from an asyncio load generator in this process:

- fixed rate (open loop): request ``i`` is due at ``t0 + i / rate`` whatever happened before it;
  latency is measured from the due time, so a stalled server is not hidden (coordinated omission);
- saturation (closed loop): ``concurrency`` requests in flight at all times; ``qps`` is the capacity.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from streamrec.serve.protos import load_stubs
from streamrec.settings import Settings
from streamrec.stats import percentile

__all__ = ["ServeBenchConfig", "format_result", "run_serve_bench", "store_sessions"]

pb2, pb2_grpc = load_stubs()

SESSION_PREFIX = "bench:sess-"


@dataclass(frozen=True)
class ServeBenchConfig:
    target: str = "127.0.0.1:50051"
    rate: float = 500.0
    seconds: float = 20.0
    concurrency: int = 32
    sessions: int = 2000
    max_len: int = 20
    k: int = 10
    dataset: str = "ml-1m"
    load_sessions: bool = True
    timeout_s: float = 1.0
    seed: int = 0
    # TCP connections, used in turn: a server of several processes (SO_REUSEPORT) shares out connections
    channels: int = 4


def store_sessions(settings: Settings, config: ServeBenchConfig) -> list[str]:
    """Write ``config.sessions`` real sessions into Redis; returns their ids."""
    from streamrec.data.datasets import load
    from streamrec.events.schema import encode_event
    from streamrec.stream.processor import Record, SessionWriter
    from streamrec.stream.session_store import offsets_key, partition_field

    inter = load(config.dataset, settings.data_dir).interactions
    users = inter["user_id"].unique()
    rng = np.random.default_rng(config.seed)
    chosen = set(rng.choice(users, size=min(config.sessions, len(users)), replace=False).tolist())
    tails = inter[inter["user_id"].isin(chosen)].groupby("user_id", sort=True).tail(config.max_len)
    now = int(time.time() * 1000)
    records, ids = [], []
    for n, (user, rows) in enumerate(tails.groupby("user_id", sort=True)):
        sid = f"{SESSION_PREFIX}{n}"
        ids.append(sid)
        for j, item in enumerate(rows["item_id"].astype(str)):
            records.append(Record("bench", 0, len(records), sid.encode(), encode_event({
                "event_id": f"{sid}-{j}", "session_id": sid, "item_id": item, "event_type": "click",
                "timestamp": now - 1000 * (len(rows) - j)})))

    async def write() -> None:
        async with SessionWriter(settings) as writer:
            # "bench" is a made-up partition whose offsets restart at 0 on every run: forget its last
            # run's, or the writer would skip this run's records as already applied
            await writer.client.hdel(offsets_key(settings.redis_prefix), partition_field("bench", 0))
            for lo in range(0, len(records), 1000):
                await writer.apply(records[lo:lo + 1000])

    asyncio.run(write())
    return ids


def _summary(latencies_s: Sequence[float], errors: int, elapsed_s: float) -> dict[str, float | int]:
    ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
    found = [percentile(ms, q) for q in (50, 90, 99)]
    p50, p90, p99 = (float("nan") if p is None else p for p in found)  # NaN: no request was answered
    return {"qps": round(len(ms) / elapsed_s, 1), "p50_ms": round(p50, 3), "p90_ms": round(p90, 3),
            "p99_ms": round(p99, 3), "errors": errors, "requests": len(ms) + errors}


class _Stubs:
    """Round-robin over one stub per connection, counting the answers that did not run the pipeline:
    a cold start (the session expired from Redis: its TTL is STREAMREC_SESSION_TTL_S) is not a figure
    of the full pipeline."""

    def __init__(self, stubs: Sequence[Any]) -> None:
        self.stubs = stubs
        self.n = 0
        self.cold_start = 0
        self.degraded = 0

    async def Recommend(self, request: Any, timeout: float) -> Any:  # noqa: N802 - the stub's name
        self.n += 1
        response = await self.stubs[self.n % len(self.stubs)].Recommend(request, timeout=timeout)
        self.cold_start += response.cold_start
        self.degraded += response.degraded
        return response

    def counts(self) -> tuple[int, int]:
        return self.cold_start, self.degraded


async def _fixed_rate(stub: Any, requests: Sequence[Any], config: ServeBenchConfig) -> dict[str, float | int]:
    latencies: list[float] = []
    errors = 0
    clock = time.perf_counter  # uvloop's loop.time() ticks in whole milliseconds
    start = clock() + 0.05
    n = int(config.rate * config.seconds)

    async def one(i: int, due: float) -> None:
        nonlocal errors
        try:
            await stub.Recommend(requests[i % len(requests)], timeout=config.timeout_s)
            latencies.append(clock() - due)
        except grpc.aio.AioRpcError:
            errors += 1

    tasks = []
    for i in range(n):
        due = start + i / config.rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(i, due)))
    await asyncio.gather(*tasks)
    return {"offered_rate": config.rate} | _summary(latencies, errors, max(clock() - start, 1e-9))


async def _saturation(stub: Any, requests: Sequence[Any], config: ServeBenchConfig) -> dict[str, float | int]:
    latencies: list[float] = []
    errors = 0
    clock = time.perf_counter
    end = clock() + config.seconds

    async def worker(w: int) -> None:
        nonlocal errors
        i = w
        while clock() < end:
            t = clock()
            try:
                await stub.Recommend(requests[i % len(requests)], timeout=config.timeout_s)
                latencies.append(clock() - t)
            except grpc.aio.AioRpcError:
                errors += 1
            i += config.concurrency

    start = clock()
    await asyncio.gather(*(worker(w) for w in range(config.concurrency)))
    return {"concurrency": config.concurrency} | _summary(latencies, errors, clock() - start)


async def _drive(session_ids: Sequence[str], config: ServeBenchConfig) -> dict[str, Any]:
    requests = [pb2.RecommendRequest(session_id=s, k=config.k) for s in session_ids]
    # a local subchannel pool per channel: otherwise channels to one target share one connection
    channels = [grpc.aio.insecure_channel(config.target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(max(config.channels, 1))]
    try:
        stub = _Stubs([pb2_grpc.RecommenderStub(c) for c in channels])
        first = await stub.Recommend(requests[0], timeout=5.0)  # fails fast when no server is there
        for r in requests[:200]:  # warm-up
            await stub.Recommend(r, timeout=5.0)
        before = stub.counts()
        fixed = await _fixed_rate(stub, requests, config)
        middle = stub.counts()
        saturation = await _saturation(stub, requests, config)
        after = stub.counts()
        for phase, (a, b) in ((fixed, (before, middle)), (saturation, (middle, after))):
            phase["cold_start"], phase["degraded"] = b[0] - a[0], b[1] - a[1]
    finally:
        await asyncio.gather(*(c.close() for c in channels))
    return {"target": config.target, "sessions": len(session_ids), "k": config.k,
            "model_versions": dict(first.model_versions), "degraded": first.degraded,
            "fixed_rate": fixed, "saturation": saturation}


def run_serve_bench(settings: Settings, config: ServeBenchConfig) -> dict[str, Any]:
    if config.load_sessions:
        ids = store_sessions(settings, config)
    else:
        ids = [f"{SESSION_PREFIX}{i}" for i in range(config.sessions)]
    try:
        import uvloop

        return uvloop.run(_drive(ids, config))
    except ImportError:
        return asyncio.run(_drive(ids, config))


def format_result(result: dict[str, Any]) -> str:
    lines = [f"Recommend over loopback at {result['target']}, {result['sessions']} sessions, k={result['k']}, "
             f"models {result['model_versions']}" + (" [DEGRADED]" if result["degraded"] else "")]
    lines.append(f"{'phase':24} {'qps':>9} {'p50_ms':>8} {'p90_ms':>8} {'p99_ms':>8} {'errors':>7}")
    for name, label in (("fixed_rate", f"fixed {result['fixed_rate']['offered_rate']:g}/s"),
                        ("saturation", f"saturation c={result['saturation']['concurrency']}")):
        r = result[name]
        lines.append(f"{label:24} {r['qps']:9.1f} {r['p50_ms']:8.2f} {r['p90_ms']:8.2f} {r['p99_ms']:8.2f} "
                     f"{r['errors']:7d}")
        if r.get("cold_start") or r.get("degraded"):
            lines.append(f"  WARNING: {r['cold_start']} cold-start and {r['degraded']} degraded answers of "
                         f"{r['requests']}: not the full pipeline (sessions expired? run without --no-load)")
    return "\n".join(lines)
