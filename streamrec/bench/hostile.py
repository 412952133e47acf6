"""``streamrec bench ingest --hostile``: Redis memory under a stream built to exhaust it.

Protocol:
- One worker runs on a topic and key prefix of the run's own; Redis must have a memory cap
  (``maxmemory``), and the bench refuses to run without one.
- The stream: N events, each with a new random item id. Every third goes to one session that never
  ends (one key, so one partition; increasing timestamps), every other one opens a new session.
  Through them, evenly spread, run ``probes`` sessions of ``probe_len`` valid events each (event k
  of every probe falls in the k-th 1/``probe_len`` of the stream), whose stored contents are
  compared at the end with what was sent: the bounds must never cost a live session its events.
- ``used_memory`` (INFO, after MEMORY PURGE) is read before publishing and once the worker has
  applied everything. It is the whole server's figure: other tenants' keys count too.
- ``applied`` is the change of the worker's applied-events counter; ``lost`` = published - applied.
  ``events_per_s`` is applied / seconds from the first publish until everything is applied (the
  worker consumes while the stream is published).
- At the end, the size of every key family, to check against the bounds in the settings.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import redis
from tqdm import tqdm

from streamrec.bench.ingest import bench_run_settings, cleanup_bench_run
from streamrec.errors import ConfigError, InfraError
from streamrec.events.schema import encode_event
from streamrec.publish.producer import EventProducer
from streamrec.redis_access import async_client
from streamrec.settings import Settings
from streamrec.stream.launcher import WorkerProcess
from streamrec.stream.session_store import pop_keys, read_session, session_keys
from streamrec.stream.topics import ensure_topics

__all__ = ["HostileBenchConfig", "format_hostile", "hostile_events", "require_cap", "run_hostile_bench"]

log = logging.getLogger(__name__)

PROBE_TYPES = ("view", "click", "add_to_cart", "purchase")
MIN_RATE = 1000.0  # events/s: slower than this (after WAIT_ALLOWANCE_S) and the wait fails
WAIT_ALLOWANCE_S = 120.0
COOC_SAMPLE = 1000  # co-occurrence keys whose size is read


@dataclass(frozen=True)
class HostileBenchConfig:
    events: int = 1_000_000
    probes: int = 200
    probe_len: int = 5
    seed: int = 0
    keep: bool = False
    progress: bool = True


def endless_session(run: str) -> str:
    return f"{run}-endless"


def probe_session(run: str, p: int) -> str:
    return f"{run}-probe{p}"


def hostile_events(n: int, run: str, *, start_ms: int, seed: int = 0, probes: int = 200,
                   probe_len: int = 5) -> Iterator[dict[str, Any]]:
    """The stream of the protocol: ``n`` hostile events and ``probes * probe_len`` probe events,
    1 ms apart from ``start_ms``. Pure given its arguments."""
    rng = random.Random(seed)
    probe_events = probes * probe_len
    total = n + probe_events
    k = hostile = 0  # probe events and hostile events so far
    for i in range(total):
        event: dict[str, Any] = {"event_id": f"{run}-e{i}", "item_id": f"{run}-{rng.getrandbits(64):016x}",
                                 "event_type": "view", "timestamp": start_ms + i}
        # probe event k sits in the middle of the k-th of probe_events equal slices of the stream
        if k < probe_events and i == (2 * k + 1) * total // (2 * probe_events):
            event["session_id"] = probe_session(run, k % probes)
            event["event_type"] = PROBE_TYPES[(k // probes) % len(PROBE_TYPES)]
            k += 1
        else:
            event["session_id"] = endless_session(run) if hostile % 3 == 0 else f"{run}-s{hostile}"
            hostile += 1
        yield event


def require_cap(maxmemory: int, address: str) -> None:
    if maxmemory <= 0:
        raise ConfigError(f"Redis at {address} has no memory cap (maxmemory 0), and the hostile bench measures memory "
                          "against it. Run `streamrec infra up` (it applies STREAMREC_REDIS_MAXMEMORY_MB to the "
                          "running server), or CONFIG SET maxmemory on yours.")


def _used_memory(client: redis.Redis) -> int:
    client.memory_purge()
    return int(client.info("memory")["used_memory"])


def _card(client: redis.Redis, key: str) -> int:
    """Members of a key whatever its type; 0 when it does not exist."""
    size: dict[bytes, Callable[[str], Any]] = {b"zset": client.zcard, b"set": client.scard, b"hash": client.hlen,
                                                b"list": client.llen}
    kind = client.type(key)
    return int(size[kind](key)) if kind in size else 0


def _wait_applied(worker: WorkerProcess, client: redis.Redis, applied: Callable[[], int], total: int,
                  progress: bool) -> None:
    timeout_s = WAIT_ALLOWANCE_S + total / MIN_RATE
    deadline = time.monotonic() + timeout_s
    with tqdm(total=total, desc="applied", unit="ev", disable=not progress, dynamic_ncols=True) as bar:
        while (n := applied()) < total:
            bar.update(n - bar.n)
            if worker.proc is not None and worker.proc.poll() is not None:
                raise InfraError(f"the bench worker exited with {worker.proc.returncode} after applying {n} of "
                                 f"{total} events:\n{worker.log_text()[-3000:]}")
            if time.monotonic() >= deadline:
                used = int(client.info("memory")["used_memory"])
                raise InfraError(f"the worker applied {n} of {total} events in {timeout_s:.0f}s (Redis used_memory "
                                 f"{used} bytes); its log tail:\n{worker.log_text()[-3000:]}")
            time.sleep(0.05)
        bar.update(n - bar.n)


async def _probes_wrong(settings: Settings, sent: dict[str, list[tuple[str, str, int]]]) -> int:
    client = async_client(settings.redis_address, cluster=False)
    try:
        wrong = 0
        for sid, events in sent.items():
            stored = await read_session(client, settings.redis_prefix, sid)
            wrong += [(e.item_id, e.event_type, e.timestamp) for e in stored] != events
        return wrong
    finally:
        await client.aclose()


def _key_families(client: redis.Redis, settings: Settings, run: str) -> dict[str, int]:
    prefix = settings.redis_prefix.encode()
    sessions = cooc = 0
    sample: list[bytes] = []
    for key in client.scan_iter(match=prefix + b"*", count=10_000):
        rest = key[len(prefix):]
        if rest.startswith(b"sess:") and rest.endswith(b":items"):
            sessions += 1
        elif rest.startswith(b"cooc:"):
            cooc += 1
            if len(sample) < COOC_SAMPLE:
                sample.append(key)
    pipe = client.pipeline(transaction=False)
    for key in sample:
        pipe.zcard(key)
    decayed, _, count, _ = pop_keys(settings.redis_prefix)
    items, seen = session_keys(settings.redis_prefix, endless_session(run))
    return {
        "sess_items_keys": sessions,
        "pop_count_zcard": int(client.zcard(count)),
        "pop_decayed_zcard": int(client.zcard(decayed)),
        "cooc_keys": cooc,
        "cooc_sampled": len(sample),
        "cooc_max_zcard_sampled": max(pipe.execute(), default=0),
        "endless_items_zcard": _card(client, items),
        "endless_seen_zcard": _card(client, seen),
    }


def run_hostile_bench(base: Settings, config: HostileBenchConfig) -> dict[str, Any]:
    if config.events <= 0 or config.probes < 0 or config.probe_len <= 0:
        raise ConfigError(f"the hostile bench needs events > 0, probes >= 0 and probe_len > 0, got {config}")
    run, settings = bench_run_settings(base)
    client = redis.Redis.from_url(settings.redis_address)
    counter = pop_keys(settings.redis_prefix)[3]

    def applied() -> int:
        return int(client.get(counter) or 0)

    worker: WorkerProcess | None = None
    try:
        maxmemory = int(client.config_get("maxmemory")["maxmemory"])
        require_cap(maxmemory, settings.redis_address)
        ensure_topics(settings)
        worker = WorkerProcess(settings, base.home / "logs" / f"bench-hostile-{run}.log").start()  # info: it logs "Ready"
        applied_before, memory_before = applied(), _used_memory(client)

        probe_ids = {probe_session(run, p) for p in range(config.probes)}
        sent: dict[str, list[tuple[str, str, int]]] = {sid: [] for sid in probe_ids}
        total = config.events + config.probes * config.probe_len
        events = hostile_events(config.events, run, start_ms=int(time.time() * 1000) - 3_600_000, seed=config.seed,
                                probes=config.probes, probe_len=config.probe_len)
        started = time.perf_counter()
        with (EventProducer(settings) as producer,
              tqdm(total=total, desc="published", unit="ev", disable=not config.progress, dynamic_ncols=True) as bar):
            for event in events:
                sid = event["session_id"]
                producer.send(encode_event(event), sid.encode())
                if sid in probe_ids:
                    sent[sid].append((event["item_id"], event["event_type"], event["timestamp"]))
                bar.update()
            producer.flush()
        if producer.stats.failed:
            raise InfraError(f"Kafka refused {producer.stats.failed} of {total} events: {producer.stats.errors}")
        _wait_applied(worker, client, lambda: applied() - applied_before, total, config.progress)
        seconds = time.perf_counter() - started
        n_applied = applied() - applied_before
        memory_after = _used_memory(client)
        result: dict[str, Any] = {
            "events": config.events,
            "probe_sessions": config.probes,
            "published": total,
            "applied": n_applied,
            "lost": total - n_applied,
            "probe_sessions_wrong": asyncio.run(_probes_wrong(settings, sent)),
            "events_per_s": round(n_applied / seconds, 1),
            "used_memory_before": memory_before,
            "used_memory_after": memory_after,
            "maxmemory": maxmemory,
            "under_cap": memory_after < maxmemory,
            **_key_families(client, settings, run),
            "session_max_len": settings.session_max_len,
            "counter_max_items": settings.counter_max_items,
            "cooc_max_partners": settings.cooc_max_partners,
        }
    finally:
        if worker is not None:
            worker.stop()
        if not config.keep:
            cleanup_bench_run(settings, client)
        client.close()
    return result


def format_hostile(r: dict[str, Any]) -> str:
    mib = 1024 * 1024
    lines = [
        (f"hostile ingest: {r['published']:,} events published, {r['applied']:,} applied, lost {r['lost']}, "
         f"probe sessions wrong {r['probe_sessions_wrong']} of {r['probe_sessions']}, {r['events_per_s']:,.0f} events/s"),
        (f"redis used_memory: {r['used_memory_before'] / mib:.1f} MiB before, {r['used_memory_after'] / mib:.1f} MiB "
         f"after, cap {r['maxmemory'] / mib:.0f} MiB ({'under' if r['under_cap'] else 'NOT under'} the cap)"),
        (f"sessions: {r['sess_items_keys']:,} keys; the endless one holds {r['endless_items_zcard']:,} events "
         f"(bound {r['session_max_len']:,}) and {r['endless_seen_zcard']:,} seen ids"),
        (f"popularity: {r['pop_count_zcard']:,} counted and {r['pop_decayed_zcard']:,} decayed items "
         f"(bound {r['counter_max_items']:,})"),
        (f"co-occurrence: {r['cooc_keys']:,} keys, the largest of {r['cooc_sampled']:,} sampled has "
         f"{r['cooc_max_zcard_sampled']:,} partners (bound {r['cooc_max_partners']:,})"),
    ]
    return "\n".join(lines)
