"""The layers of ingest that ``bench ingest`` times one by one, and the CPU each process spends.

Each layer adds one thing to the one before, on the same pre-published events:

| layer | what runs |
|---|---|
| ``aiokafka`` | a bare aiokafka consumer, ``getmany`` and count: the floor of Python Kafka consumption |
| ``faust`` | the Faust worker in dry run: take, ack and count each batch |
| ``parse`` | + our validation and batch plan, no Redis |
| ``redis`` | + the Redis write (the Lua script), with Redis persistence off |
| ``shipped`` | the worker with Redis as it runs (the append-only file, ``appendfsync everysec``, as shipped) |

The CPU of a layer is read from ``/proc`` for each process that takes part: the worker(s), and Redis
and the Kafka broker when they run on this machine (found by the port they listen on). It is divided
by the events consumed over the same window as the rate, so start-up is left out.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import redis

from streamrec.bench.cpu import CLOCK_TICKS, cpu_ticks, listening_pids
from streamrec.bench.startup import read_proc
from streamrec.settings import Settings
from streamrec.stream.modes import DryRun

__all__ = ["ALL_LAYERS", "LAYERS", "PERSISTENCE", "Layer", "format_layers", "process_cpu_s", "read_config", "redis_config",
           "service_pids"]


@dataclass(frozen=True)
class Layer:
    name: str
    what: str
    dry_run: DryRun | None  # None: the real worker
    appendonly: str | None = None  # a Redis ``appendonly`` for the layer's run; None: as the server runs


LAYERS: Final = {layer.name: layer for layer in (
    Layer("aiokafka", "bare aiokafka consumer (getmany, count)", "aiokafka"),
    Layer("faust", "Faust dry run (take, ack, count)", "count"),
    Layer("parse", "+ our validation and batch plan", "parse"),
    Layer("redis", "+ Redis writes, persistence off", None, appendonly="no"),
    Layer("shipped", "+ Redis persistence as it runs", None),
)}
ALL_LAYERS: Final = tuple(LAYERS)
PERSISTENCE: Final = ("appendonly", "appendfsync")  # the Redis settings each row of the bench reports


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds of one process, its threads included; 0 once it is gone."""
    stat = read_proc(f"/proc/{pid}/stat")
    return cpu_ticks(stat) / CLOCK_TICKS if stat else 0.0


def _port(address: str, default: int) -> tuple[str, int]:
    parts = urlsplit(address if "//" in address else f"//{address}")
    return parts.hostname or "", parts.port or default


def service_pids(settings: Settings) -> dict[str, int]:
    """The pids of Redis and of the Kafka broker, for those that listen on this machine (one broker only)."""
    found = {}
    local = {"127.0.0.1", "localhost", "::1"}
    servers = [_port(s, 9092) for s in settings.kafka_access.servers]
    targets = [("redis", _port(settings.redis_address, 6379))] + ([("kafka", servers[0])] if len(servers) == 1 else [])
    for name, (host, port) in targets:
        pids = listening_pids(port) if host in local else []
        if len(pids) == 1:
            found[name] = pids[0]
    return found


def _aof_busy(client: redis.Redis) -> bool:
    info: Mapping[str, Any] = client.info("persistence")
    return bool(info.get("aof_rewrite_in_progress") or info.get("aof_rewrite_scheduled"))


def read_config(client: redis.Redis, names: Sequence[str]) -> dict[str, str]:
    return {name: str(client.config_get(name)[name]) for name in names}


@contextmanager
def redis_config(client: redis.Redis, values: Mapping[str, str], timeout_s: float = 300.0) -> Iterator[dict[str, str]]:
    """Redis's ``CONFIG`` set to ``values`` for the block, then put back; yields what it was. Turning the
    append-only file back on makes Redis rewrite it, and then the exit waits for that to finish, so
    that the next measurement does not share the machine with the rewrite."""
    old = read_config(client, list(values))
    try:
        for name, value in values.items():
            client.config_set(name, value)
        yield old
    finally:
        for name, value in old.items():
            client.config_set(name, value)
        deadline = time.monotonic() + timeout_s
        while "appendonly" in values and _aof_busy(client) and time.monotonic() < deadline:
            time.sleep(0.1)


def _cell(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def format_layers(rows: Sequence[Mapping[str, Any]]) -> str:
    """The layers as a Markdown table: throughput, and CPU µs per event by process with the step from the layer above."""
    head = ("| layer | events/s | worker CPU µs/event | step | Redis CPU µs/event | broker CPU µs/event |\n"
            "|---|---|---|---|---|---|")
    lines, before = [head], None
    for row in rows:
        worker = row["worker_cpu_us_per_event"]
        step = None if before is None or worker is None else worker - before
        lines.append(f"| {row['layer']}: {row['what']} | {_cell(row['events_per_s'])} | {_cell(worker, 1)} | "
                     f"{'' if step is None else f'{step:+.1f}'} | {_cell(row['redis_cpu_us_per_event'], 1)} | "
                     f"{_cell(row['kafka_cpu_us_per_event'], 1)} |")
        before = worker
    return "\n".join(lines)
