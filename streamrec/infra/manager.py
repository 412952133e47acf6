"""``streamrec infra up|down|status``: both services together, idempotently."""

from __future__ import annotations

from dataclasses import dataclass

from streamrec.infra.kafka_broker import KafkaBroker
from streamrec.infra.redis_server import RedisServer
from streamrec.settings import Settings

__all__ = ["ServiceStatus", "infra_down", "infra_status", "infra_up"]


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    address: str
    pid: int | None  # None when streamrec did not start it (or it is not running)
    healthy: bool
    log: str
    changed: bool = False  # this call started or stopped it


def _services(settings: Settings) -> tuple[KafkaBroker, RedisServer]:
    return KafkaBroker(settings), RedisServer(settings)


def infra_up(settings: Settings) -> list[ServiceStatus]:
    """Start whatever is not running yet, and wait until both answer."""
    out = []
    for service in _services(settings):
        started = service.start()
        out.append(_status(service, changed=started))
    return out


def infra_down(settings: Settings) -> list[ServiceStatus]:
    """Stop only the processes that ``infra_up`` started (by pid file)."""
    out = []
    for service in reversed(_services(settings)):
        stopped = service.stop()
        out.append(_status(service, changed=stopped))
    return out


def infra_status(settings: Settings) -> list[ServiceStatus]:
    return [_status(service) for service in _services(settings)]


def _status(service: KafkaBroker | RedisServer, changed: bool = False) -> ServiceStatus:
    proc = service.process
    return ServiceStatus(proc.name, service.address, proc.pid(), service.healthy(), str(proc.logfile), changed)
