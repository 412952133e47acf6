"""Local infrastructure: a real Kafka broker (KRaft) and a real redis-server on loopback."""

from streamrec.infra.manager import ServiceStatus, infra_down, infra_status, infra_up

__all__ = ["ServiceStatus", "infra_down", "infra_status", "infra_up"]
