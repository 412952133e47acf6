"""``streamrec bench ingest``: Kafka -> N workers -> Redis, end to end, against the real services.

Protocol:
- **Throughput.** N events are published to a fresh topic *before* any worker starts, so the
  producer cannot be the bottleneck. Each timed layer (``streamrec.bench.layers``) then reads them
  with a consumer group and key prefix of its own, and a poller reads its applied-events counter in
  Redis every 10 ms. ``events_per_s`` is the slope between the first and the last change of that
  counter: sustained consumption, without start-up. At the same two polls it reads the CPU time of
  the worker(s), and of Redis and the broker when they run here; their differences over the events
  in between are the CPU µs per event of each process.
- **Layers.** By default Faust's dry run (take, acks, no session writes: the ceiling) and the worker
  as shipped; with ``--layers`` also a bare aiokafka consumer, the dry run plus our parsing, and the
  worker with Redis's append-only file turned off for its run (``CONFIG SET``, put back after).
- **Several workers** (``workers`` > 1). All N start at once on the preloaded topic; the first
  to join consumes alone until the others have joined, so the slope starts only once the group
  is stable with N members that each own partitions (``events_before_stable`` says how much of
  the preload went before that). Every worker adds to the same counter.
- **Freshness.** With the shipped worker caught up, events are offered at each fixed rate, each to a
  new session, with ``timestamp`` = publish time, after one untimed event that warms the producer
  up. A separate process subscribes to Redis keyspace notifications for those sessions' keys; the
  notification fires when the write lands, so arrival minus timestamp is publish-to-visible latency
  (ms resolution on the publish side). Phases run under each requested ``appendfsync`` and repeat,
  interleaved; each counts Redis's forks (an append-only file rewrite is one), which is where the
  tail comes from on a small machine.
- **Loss.** ``lost`` = events published - events applied (the worker skips what it applied by offset, and by event id an event published twice).
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import random
import statistics
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import redis
from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from streamrec.bench.layers import (
    ALL_LAYERS,
    LAYERS,
    PERSISTENCE,
    Layer,
    format_layers,
    process_cpu_s,
    read_config,
    redis_config,
    service_pids,
)
from streamrec.errors import ConfigError
from streamrec.events.schema import encode_event
from streamrec.kafka_security import kafka_python_kwargs
from streamrec.publish.producer import EventProducer, Pacer
from streamrec.settings import Settings
from streamrec.stats import percentile
from streamrec.stream.datadir import remove_faust_data
from streamrec.stream.inspect import group_assignment
from streamrec.stream.launcher import WorkerProcess
from streamrec.stream.modes import DryRun
from streamrec.stream.session_store import pop_keys
from streamrec.stream.topics import ensure_topics

__all__ = ["DEFAULT_LAYERS", "IngestBenchConfig", "bench_run_settings", "cleanup_bench_run", "format_ingest",
           "run_ingest_bench", "summarise_freshness", "synthetic_events"]

log = logging.getLogger(__name__)


DEFAULT_LAYERS: Final = ("faust", "shipped")


@dataclass(frozen=True)
class IngestBenchConfig:
    events: int = 200_000
    fresh_rates: tuple[float, ...] = (5000.0,)  # offered rates of the freshness phases
    fresh_seconds: float = 20.0
    source: str = "ml-1m"  # a MovieLens name, or "synthetic"
    keep: bool = False
    layers: tuple[str, ...] = DEFAULT_LAYERS  # which of ``streamrec.bench.layers.LAYERS`` to time; "shipped" always
    workers: int = 1  # worker processes, at most the topic's partitions
    fsync_modes: tuple[str, ...] = ()  # Redis ``appendfsync`` for the freshness phases; () is as Redis runs
    repeats: int = 1  # of each freshness phase, interleaved


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


@dataclass(frozen=True)
class Slope:
    """What ``_consume_rate`` measured: the sustained rate, and the CPU seconds each process spent over
    the same window."""

    rate: float | None  # None: too few events to see two counts
    before_stable: int
    events: int
    cpu_s: dict[str, float]


def _cpu(workers: list[WorkerProcess], services: dict[str, int]) -> dict[str, float]:
    seconds = {name: process_cpu_s(pid) for name, pid in services.items()}
    seconds["worker"] = sum(process_cpu_s(w.proc.pid) for w in workers if w.proc is not None)
    return seconds


def _consume_rate(workers: list[WorkerProcess], client: redis.Redis, counter: str, total: int,
                  settings: Settings | None = None, services: dict[str, int] | None = None) -> Slope:
    """Poll the workers' applied-events counter every 10 ms until it reaches ``total``; the
    sustained rate is the slope from its first change to its last, and each process's CPU is read at
    the same two polls. With several workers (and ``settings`` to find their group) the slope starts
    once the group is stable with all of them."""
    samples: list[tuple[float, int, dict[str, float]]] = []
    deadline = time.monotonic() + 900
    start_at: float | None = None if settings is not None and len(workers) > 1 else 0.0
    next_check = 0.0
    while time.monotonic() < deadline:
        n = int(client.get(counter) or 0)
        samples.append((time.perf_counter(), n, _cpu(workers, services or {})))
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
    moving = [s for s in samples if s[1] > 0 and s[0] >= start_at]
    if not moving:
        raise RuntimeError(f"the bench workers applied nothing in 15 minutes:\n{workers[0].log_text()[-3000:]}")
    first, last = moving[0], next(s for s in moving if s[1] == moving[-1][1])
    rate = (last[1] - first[1]) / (last[0] - first[0]) if last[0] > first[0] else None
    return Slope(rate, first[1], last[1] - first[1], {name: last[2][name] - first[2][name] for name in first[2]})


def _start(settings: Settings, logs: Path, n: int, name: str, dry_run: DryRun | None = None) -> list[WorkerProcess]:
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


def _layer_settings(settings: Settings, layer: Layer) -> Settings:
    """Each layer but the shipped worker reads the topic with a group and a key prefix of its own."""
    if layer.name == "shipped":
        return settings
    return settings.replace(app_id=f"{settings.app_id}-{layer.name}", redis_prefix=f"{settings.redis_prefix}{layer.name}:")


def _per_event(seconds: float | None, events: int) -> float | None:
    return None if seconds is None or not events else round(seconds * 1e6 / events, 1)


def _layer_row(layer: Layer, slope: Slope, redis_conf: dict[str, str]) -> dict[str, Any]:
    return {"layer": layer.name, "what": layer.what, "events_per_s": None if slope.rate is None else round(slope.rate, 1),
            "events_timed": slope.events, "events_before_stable": slope.before_stable,
            "worker_cpu_us_per_event": _per_event(slope.cpu_s.get("worker"), slope.events),
            "redis_cpu_us_per_event": _per_event(slope.cpu_s.get("redis"), slope.events),
            "kafka_cpu_us_per_event": _per_event(slope.cpu_s.get("kafka"), slope.events),
            "redis_appendonly": redis_conf.get("appendonly"), "redis_appendfsync": redis_conf.get("appendfsync")}


def _run_layer(layer: Layer, settings: Settings, client: redis.Redis, published: int, logs: Path, n: int, run: str,
               services: dict[str, int]) -> tuple[dict[str, Any], list[WorkerProcess]]:
    """Time one layer on the preloaded topic. The shipped worker is returned running (it serves the
    freshness phases next); every other layer's processes are stopped."""
    layered = _layer_settings(settings, layer)
    with redis_config(client, {"appendonly": layer.appendonly} if layer.appendonly else {}):
        conf = read_config(client, PERSISTENCE)
        workers = _start(layered, logs, n, f"bench-{layer.name}-{run}", dry_run=layer.dry_run)
        try:
            slope = _consume_rate(workers, client, pop_keys(layered.redis_prefix)[3], published, layered, services)
        finally:
            if layer.name != "shipped":
                _stop(workers)
    return _layer_row(layer, slope, conf), workers if layer.name == "shipped" else []


def _freshness(settings: Settings, client: redis.Redis, workers: list[WorkerProcess], rate: float, seconds: float,
               tag: str) -> dict[str, Any]:
    """Offer events at ``rate`` for ``seconds``, each to a new session stamped with its publish time,
    and time each until its session key is written (a keyspace notification)."""
    fresh_n = int(rate * seconds)
    counter = pop_keys(settings.redis_prefix)[3]
    before = int(client.get(counter) or 0)
    pattern = f"__keyspace@0__:{settings.redis_prefix}sess:{{fresh-{tag}-*}}:items"
    ctx = mp.get_context("spawn")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    listener = ctx.Process(target=_listen, args=(settings.redis_address, pattern, ready, stop, out), daemon=True)
    listener.start()
    ready.wait(30)
    sent_at: dict[str, int] = {}
    pacer = Pacer(rate)
    cpu_before, forks_before = _cpu(workers, {})["worker"], _forks(client)
    with EventProducer(settings, linger_ms=0) as producer:
        # untimed: the producer's first send waits for the topic's metadata and its connections
        warm = f"warm-{tag}"
        producer.send(encode_event({"event_id": warm, "session_id": warm, "item_id": "item-0", "event_type": "click",
                                    "timestamp": int(time.time() * 1000)}), warm.encode())
        producer.flush()
        for i in range(fresh_n):
            sid = f"fresh-{tag}-{i}"
            pacer.wait()
            ts = int(time.time() * 1000)
            producer.send(encode_event({"event_id": sid, "session_id": sid, "item_id": f"item-{i % 5000}",
                                        "event_type": "click", "timestamp": ts}), sid.encode())
            sent_at[sid] = ts
        offered_s = time.perf_counter() - (pacer.start or time.perf_counter())
    deadline = time.monotonic() + 60
    while int(client.get(counter) or 0) < before + fresh_n + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    cpu_s, forks = _cpu(workers, {})["worker"] - cpu_before, _forks(client) - forks_before
    time.sleep(0.5)  # the last notifications are on their way to the listener
    stop.set()
    arrivals = out.get(timeout=30)
    listener.join(10)
    prefix = f"__keyspace@0__:{settings.redis_prefix}sess:{{"
    latencies = sorted(arrivals[f"{prefix}{sid}}}:items"] - ts for sid, ts in sent_at.items()
                       if f"{prefix}{sid}}}:items" in arrivals)
    return {"rate_offered": rate, "rate_achieved": round(fresh_n / offered_s, 1) if offered_s else None,
            "events": fresh_n + 1, "observed": len(latencies), "lost": before + fresh_n + 1 - int(client.get(counter) or 0),
            "p50_ms": _ms(latencies, 50), "p90_ms": _ms(latencies, 90), "p99_ms": _ms(latencies, 99),
            "max_ms": round(latencies[-1], 2) if latencies else None,
            "worker_cpu_us_per_event": _per_event(cpu_s, fresh_n), "redis_forks": forks}


def _forks(client: redis.Redis) -> int:
    """Redis's forks so far: each is a background rewrite of the append-only file (or a snapshot), a child
    that copies the whole dataset while the phase runs."""
    return int(client.info("stats").get("total_forks", 0))


def _spread(values: list[float | None]) -> dict[str, float | None]:
    seen = [v for v in values if v is not None]
    if not seen:
        return {"median": None, "min": None, "max": None}
    return {"median": round(statistics.median(seen), 2), "min": min(seen), "max": max(seen)}


def summarise_freshness(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (fsync, rate): the median, min and max over the repeats of p50 and p99. Pure."""
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["appendfsync"], row["rate_offered"]), []).append(row)
    return [{"appendfsync": fsync, "rate_offered": rate, "runs": len(group),
             "p50_ms": _spread([r["p50_ms"] for r in group]), "p99_ms": _spread([r["p99_ms"] for r in group]),
             "runs_with_redis_fork": sum(1 for r in group if r.get("redis_forks")),
             "lost": sum(r["lost"] for r in group)}
            for (fsync, rate), group in groups.items()]


def run_ingest_bench(base: Settings, config: IngestBenchConfig) -> dict[str, Any]:
    if not 1 <= config.workers <= base.topic_partitions:
        raise ConfigError(f"workers must be between 1 and the topic's {base.topic_partitions} partitions, "
                          f"got {config.workers}")
    unknown = sorted(set(config.layers) - set(LAYERS))
    if unknown or "shipped" not in config.layers:
        raise ConfigError(f"layers are {', '.join(LAYERS)}, and 'shipped' must be one of them; got {config.layers}")
    bad_fsync = sorted(set(config.fsync_modes) - {"always", "everysec", "no"})
    if bad_fsync or config.repeats < 1 or not config.fresh_rates or min(config.fresh_rates) <= 0:
        raise ConfigError("fsync modes are always, everysec or no; repeats at least 1; rates positive")
    run, settings = bench_run_settings(base)
    ensure_topics(settings)
    client = redis.Redis.from_url(settings.redis_address)
    counter = pop_keys(settings.redis_prefix)[3]
    services = service_pids(settings)

    published = 0
    with EventProducer(settings) as producer:
        for key, payload in _source(config, settings):
            producer.send(payload, key)
            published += 1
    logs, n = base.home / "logs", config.workers
    workers: list[WorkerProcess] = []
    try:
        layers = []
        for name in (x for x in ALL_LAYERS if x in config.layers):
            row, started = _run_layer(LAYERS[name], settings, client, published, logs, n, run, services)
            layers.append(row)
            workers += started
        shipped = layers[-1]

        fresh: list[dict[str, Any]] = []
        with redis_config(client, {"notify-keyspace-events": "Kz"}):
            for repeat in range(config.repeats):
                for fsync in config.fsync_modes or (None,):
                    with redis_config(client, {"appendfsync": fsync} if fsync else {}):
                        conf = read_config(client, PERSISTENCE)
                        for rate in config.fresh_rates:
                            tag = f"{run}-{len(fresh)}"
                            row = _freshness(settings, client, workers, rate, config.fresh_seconds, tag)
                            fresh.append({"run": repeat + 1, **conf, **row})
                            log.info("freshness %s", fresh[-1])
        total = published + sum(r["events"] for r in fresh)
        result: dict[str, Any] = {
            "events": total,
            "lost": total - int(client.get(counter) or 0),
            "workers": n,
            "events_per_s": shipped["events_per_s"],
            "events_before_stable": shipped["events_before_stable"],
            "faust_ceiling_events_per_s": next((r["events_per_s"] for r in layers if r["layer"] == "faust"), None),
            "throughput_events": published,
            "throughput_source": config.source,
            "layers": layers,
            "freshness": fresh,
            "freshness_summary": summarise_freshness(fresh),
            "batch_max": settings.batch_max,
            "batch_within_s": settings.batch_within_s,
        }
    finally:
        _stop(workers)
        if not config.keep:
            cleanup_bench_run(settings, client)
        client.close()
    return result


def format_ingest(result: Mapping[str, Any]) -> str:
    """The figures as Markdown: the layers, every freshness phase, and the median (min to max) per rate and fsync."""
    head = (f"{result['throughput_events']:,} {result['throughput_source']} events, {result['workers']} worker(s); "
            f"lost {result['lost']} of {result['events']:,}")
    columns = ("run", "appendonly", "appendfsync", "offered/s", "achieved/s", "p50 ms", "p90 ms", "p99 ms", "max ms",
               "worker CPU µs/event", "Redis forks", "lost")
    out = [head, "", format_layers(result["layers"]), "", *_table_head(columns)]
    out += [f"| {r['run']} | {r['appendonly']} | {r['appendfsync']} | {r['rate_offered']:,.0f} | {r['rate_achieved']} | "
            f"{r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | {r['max_ms']} | {r['worker_cpu_us_per_event']} | "
            f"{r['redis_forks']} | {r['lost']} |" for r in result["freshness"]]
    if any(s["runs"] > 1 for s in result["freshness_summary"]):
        columns = ("appendfsync", "offered/s", "runs", "p50 ms: median (min-max)", "p99 ms: median (min-max)",
                   "runs with a Redis fork", "lost")
        out += ["", *_table_head(columns)]
        out += [f"| {s['appendfsync']} | {s['rate_offered']:,.0f} | {s['runs']} | {_span(s['p50_ms'])} | "
                f"{_span(s['p99_ms'])} | {s['runs_with_redis_fork']} | {s['lost']} |" for s in result["freshness_summary"]]
    return "\n".join(out)


def _table_head(columns: tuple[str, ...]) -> tuple[str, str]:
    return f"| {' | '.join(columns)} |", "|---" * len(columns) + "|"


def _span(spread: Mapping[str, float | None]) -> str:
    return f"{spread['median']} ({spread['min']}-{spread['max']})"


def cleanup_bench_run(settings: Settings, client: redis.Redis) -> None:
    """Delete the run's Redis keys, topics, consumer groups and Faust data directories."""
    remove_faust_data(settings)
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
