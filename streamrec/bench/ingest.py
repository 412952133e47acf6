"""``streamrec bench ingest``: Kafka -> N workers -> Redis, end to end, against the real services.

Protocol:
- **Throughput.** N events are published to a fresh topic *before* the worker starts, so the
  producer cannot be the bottleneck. The worker process is then started, and a poller reads the
  worker's applied-events counter in Redis every 10 ms. ``events_per_s`` is the slope between the
  first and the last change of that counter: sustained consumption, without start-up.
- **Several workers** (``workers`` > 1). All N start at once on the preloaded topic; the first
  to join consumes alone until the others have joined, so the slope starts only once the group
  is stable with N members that each own partitions (``events_before_stable`` says how much of
  the preload went before that). Every worker adds to the same counter.
- **Freshness.** With the worker caught up, events are offered at a fixed rate, each to a new
  session, with ``timestamp`` = publish time. A separate process subscribes to Redis keyspace
  notifications for those sessions' keys; the notification fires when the write lands, so arrival
  minus timestamp is publish-to-visible latency (ms resolution on the publish side).
- **Ceiling.** The same events are first consumed by a dry-run worker (Faust, take_events and
  acks, but no session writes): ``faust_ceiling_events_per_s`` is what the framework alone
  sustains here, the bound on ``events_per_s``.
- **Loss.** ``lost`` = events published - events applied (the worker skips what it applied by offset, and by event id an event published twice).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from streamrec.errors import ConfigError
from streamrec.events.schema import encode_event
from streamrec.kafka_security import kafka_python_kwargs
from streamrec.publish.producer import EventProducer, Pacer
from streamrec.settings import Settings
from streamrec.stats import percentile
from streamrec.stream.inspect import group_assignment
from streamrec.stream.launcher import WorkerProcess
from streamrec.stream.session_store import pop_keys
from streamrec.stream.topics import ensure_topics

__all__ = ["IngestBenchConfig", "bench_run_settings", "cleanup_bench_run", "run_ingest_bench", "synthetic_events"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestBenchConfig:
    events: int = 200_000
    fresh_rate: float = 5000.0
    fresh_seconds: float = 20.0
    source: str = "ml-1m"  # a MovieLens name, or "synthetic"
    keep: bool = False
    faust_ceiling: bool = True  # also time dry-run workers (Faust alone) on the same events
    workers: int = 1  # worker processes, at most the topic's partitions


def synthetic_events(n: int, seed: int = 0, n_items: int = 20_000, session_len: int = 12,
                     concurrent: int = 2000, start_ms: int | None = None) -> Iterator[dict[str, Any]]:
    """Interleaved sessions over a Zipf-like catalogue, in time order (1 ms apart, starting an
    hour ago unless ``start_ms`` is given). Pure given the seed and ``start_ms``."""
    rng = random.Random(seed)
    start_ms = int(time.time() * 1000) - 3_600_000 if start_ms is None else start_ms
    active: list[tuple[str, int]] = []
    next_session = 0
    for i in range(n):
        if len(active) < concurrent:
            active.append((f"syn-{seed}-{next_session}", rng.randint(2, 2 * session_len)))
            next_session += 1
        j = rng.randrange(len(active))
        sid, left = active[j]
        item = int(n_items * rng.random() ** 3)
        yield {"event_id": f"syn-{seed}-e{i}", "session_id": sid, "item_id": f"item-{item}",
               "event_type": "view", "timestamp": start_ms + i}
        if left <= 1:
            active[j] = active[-1]
            active.pop()
        else:
            active[j] = (sid, left - 1)


def _source(config: IngestBenchConfig, settings: Settings) -> Iterator[tuple[bytes, bytes]]:
    """(key, payload) pairs for the throughput phase."""
    if config.source == "synthetic":
        events: Iterator[dict[str, Any]] = synthetic_events(config.events)
    else:
        from streamrec.data.datasets import load
        from streamrec.data.replay import replay_events

        events = replay_events(load(config.source, settings.data_dir).interactions, limit=config.events)
    return ((e["session_id"].encode(), encode_event(e)) for e in events)


def _listen(redis_url: str, pattern: str, ready: Any, stop: Any, out: Any) -> None:
    """Child process: record when each session key is first written (keyspace notification)."""
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe(pattern)
    ready.set()
    arrivals: dict[bytes, float] = {}
    while not stop.is_set():
        msg = pubsub.get_message(timeout=0.05)
        while msg is not None:
            arrivals.setdefault(msg["channel"], time.time() * 1000.0)
            msg = pubsub.get_message(timeout=0)
    out.put({k.decode(): v for k, v in arrivals.items()})


def _ms(values: list[float], q: float) -> float | None:
    """A percentile for the report: None (JSON null) when nothing was observed."""
    p = percentile(values, q)
    return None if p is None else round(p, 2)


def _group_ready(settings: Settings, n: int) -> bool:
    """The worker group is stable with ``n`` members that each own partitions of the clicks topic."""
    try:
        state, members = group_assignment(settings)
    except KafkaError:
        return False
    return state == "Stable" and len(members) == n and all(members)


def _consume_rate(workers: list[WorkerProcess], client: redis.Redis, counter: str, total: int,
                  settings: Settings | None = None) -> tuple[float, int]:
    """Poll the workers' applied-events counter every 10 ms until it reaches ``total``; the
    sustained rate is the slope from its first change to its last. With several workers (and
    ``settings`` to find their group) the slope starts once the group is stable with all of
    them. Returns the rate and the count applied before the slope starts."""
    samples: list[tuple[float, int]] = []
    deadline = time.monotonic() + 900
    start_at: float | None = None if settings is not None and len(workers) > 1 else 0.0
    next_check = 0.0
    while time.monotonic() < deadline:
        n = int(client.get(counter) or 0)
        samples.append((time.perf_counter(), n))
        if n >= total:
            break
        for worker in workers:
            if worker.proc is not None and worker.proc.poll() is not None:
                raise RuntimeError(f"bench worker died:\n{worker.log_text()[-3000:]}")
        if start_at is None and time.monotonic() >= next_check:
            assert settings is not None
            if _group_ready(settings, len(workers)):
                start_at = time.perf_counter()
            next_check = time.monotonic() + 0.25
        time.sleep(0.01)
    if start_at is None:
        raise RuntimeError(f"the preload ({total} events) was consumed before {len(workers)} workers formed a stable "
                           "group: give more --events")
    moving = [(t, n) for t, n in samples if n > 0 and t >= start_at]
    if not moving:
        raise RuntimeError(f"the bench workers applied nothing in 15 minutes:\n{workers[0].log_text()[-3000:]}")
    first, last = moving[0], next(s for s in moving if s[1] == moving[-1][1])
    rate = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else float("nan")
    return rate, first[1]


def _start(settings: Settings, logs: Path, n: int, name: str, dry_run: bool = False) -> list[WorkerProcess]:
    """``n`` worker processes started together; none waits for the others."""
    return [WorkerProcess(settings, logs / f"{name}-{i}.log", "warning", dry_run=dry_run).start(wait_ready_s=0)
            for i in range(n)]


def _stop(workers: list[WorkerProcess]) -> None:
    for worker in workers:
        worker.stop()


def bench_run_settings(base: Settings) -> tuple[str, Settings]:
    """A run id, and settings with a topic, consumer group and Redis prefix of that run's own."""
    run = uuid.uuid4().hex[:8]
    return run, base.replace(clicks_topic=f"streamrec.bench.{run}.clicks", dead_letter_topic=f"streamrec.bench.{run}.dlq",
                             app_id=f"streamrec-bench-{run}", redis_prefix=f"bench:{run}:")


def run_ingest_bench(base: Settings, config: IngestBenchConfig) -> dict[str, Any]:
    if not 1 <= config.workers <= base.topic_partitions:
        raise ConfigError(f"workers must be between 1 and the topic's {base.topic_partitions} partitions, "
                         f"got {config.workers}")
    run, settings = bench_run_settings(base)
    ensure_topics(settings)
    client = redis.Redis.from_url(settings.redis_address)
    counter = pop_keys(settings.redis_prefix)[3]

    def applied() -> int:
        return int(client.get(counter) or 0)

    # throughput: preload, then consume
    published = 0
    with EventProducer(settings) as producer:
        for key, payload in _source(config, settings):
            producer.send(payload, key)
            published += 1
    logs, n = base.home / "logs", config.workers
    workers: list[WorkerProcess] = []
    dry = settings.replace(app_id=f"{settings.app_id}-dry", redis_prefix=f"{settings.redis_prefix}dry:")
    try:
        ceiling = None
        if config.faust_ceiling:
            dry_workers = _start(dry, logs, n, f"bench-dry-{run}", dry_run=True)
            try:
                ceiling, _ = _consume_rate(dry_workers, client, pop_keys(dry.redis_prefix)[3], published, dry)
            finally:
                _stop(dry_workers)
        workers = _start(settings, logs, n, f"bench-worker-{run}")
        events_per_s, before_stable = _consume_rate(workers, client, counter, published, settings)

        # freshness at a fixed offered rate, one new session per event
        fresh_n = int(config.fresh_rate * config.fresh_seconds)
        pattern = f"__keyspace@0__:{settings.redis_prefix}sess:{{fresh-{run}-*}}:items"
        old_notify = client.config_get("notify-keyspace-events")["notify-keyspace-events"]
        client.config_set("notify-keyspace-events", "Kz")
        ctx = mp.get_context("spawn")
        ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
        listener = ctx.Process(target=_listen, args=(settings.redis_address, pattern, ready, stop, out), daemon=True)
        listener.start()
        ready.wait(30)
        sent_at: dict[str, int] = {}
        pacer = Pacer(config.fresh_rate)
        with EventProducer(settings, linger_ms=0) as producer:
            for i in range(fresh_n):
                sid = f"fresh-{run}-{i}"
                pacer.wait()
                ts = int(time.time() * 1000)
                producer.send(encode_event({"event_id": f"fresh-{run}-{i}", "session_id": sid, "item_id": f"item-{i % 5000}",
                                            "event_type": "click", "timestamp": ts}), sid.encode())
                sent_at[sid] = ts
            offered_s = time.perf_counter() - (pacer.start or time.perf_counter())
        total = published + fresh_n
        deadline = time.monotonic() + 60
        while applied() < total and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        stop.set()
        arrivals = out.get(timeout=30)
        listener.join(10)
        client.config_set("notify-keyspace-events", old_notify)
        prefix = f"__keyspace@0__:{settings.redis_prefix}sess:{{"
        latencies = sorted(arrivals[f"{prefix}{sid}}}:items"] - ts for sid, ts in sent_at.items()
                           if f"{prefix}{sid}}}:items" in arrivals)
        result = {
            "events": total,
            "lost": total - applied(),
            "workers": n,
            "events_per_s": round(events_per_s, 1),
            "events_before_stable": before_stable,
            "faust_ceiling_events_per_s": round(ceiling, 1) if ceiling else None,
            "throughput_events": published,
            "throughput_source": config.source,
            "freshness_rate_offered": config.fresh_rate,
            "freshness_rate_achieved": round(fresh_n / offered_s, 1) if offered_s else None,
            "freshness_events": fresh_n,
            "freshness_observed": len(latencies),
            "freshness_p50_ms": _ms(latencies, 50),
            "freshness_p90_ms": _ms(latencies, 90),
            "freshness_p99_ms": _ms(latencies, 99),
            "freshness_max_ms": round(latencies[-1], 2) if latencies else None,
            "batch_max": settings.batch_max,
            "batch_within_s": settings.batch_within_s,
        }
    finally:
        _stop(workers)
        if not config.keep:
            cleanup_bench_run(settings, client)
        client.close()
    return result


def cleanup_bench_run(settings: Settings, client: redis.Redis) -> None:
    """Delete the run's Redis keys, topics and consumer groups."""
    keys = list(client.scan_iter(match=f"{settings.redis_prefix}*", count=5000))  # the dry run's keys too
    for i in range(0, len(keys), 1000):
        client.unlink(*keys[i:i + 1000])
    admin = KafkaAdminClient(**kafka_python_kwargs(settings.kafka_access), client_id="streamrec-bench")
    try:
        admin.delete_topics([settings.clicks_topic, settings.dead_letter_topic])
        admin.delete_groups([settings.app_id, f"{settings.app_id}-dry"])
    except KafkaError as exc:  # the figures are taken; leftovers are only clutter
        log.warning("bench cleanup incomplete: %s", exc)
    finally:
        admin.close()
