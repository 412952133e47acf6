"""Which Redis client to build: one node, or a Redis Cluster.

A cluster is used when ``STREAMREC_REDIS_CLUSTER=1`` or when ``STREAMREC_REDIS_URL`` says so with a
``+cluster`` scheme (``redis+cluster://`` or ``rediss+cluster://``, TLS and credentials as usual);
the URL names any one node, the client discovers the others. ``Settings.redis_address`` is the URL
without the marker, so code that only needs one node (publish notices over pub/sub, which a cluster
broadcasts to every node) keeps using a plain client on it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:  # settings imports this module: keep redis out of its import
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster

__all__ = ["CLUSTER_MARK", "AsyncRedis", "async_client", "is_cluster_url", "strip_cluster_mark"]

CLUSTER_MARK = "+cluster://"

AsyncRedis: TypeAlias = "aioredis.Redis | RedisCluster"


def is_cluster_url(url: str) -> bool:
    return CLUSTER_MARK in url.split("@", 1)[0]


def strip_cluster_mark(url: str) -> str:
    """``redis+cluster://host:6379`` as ``redis://host:6379``; other URLs unchanged."""
    return url.replace(CLUSTER_MARK, "://", 1) if is_cluster_url(url) else url


def async_client(url: str, *, cluster: bool, **kwargs: Any) -> AsyncRedis:
    """A ``redis.asyncio`` client for ``url`` (marker or not), a ``RedisCluster`` when ``cluster``
    (which allows database 0 only)."""
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster

    url = strip_cluster_mark(url)
    return RedisCluster.from_url(url, **kwargs) if cluster else aioredis.Redis.from_url(url, **kwargs)
