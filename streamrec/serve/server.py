"""``streamrec serve``: the grpc.aio server, its health and reflection services, metrics and model watcher.

The server listens at once and reports ``NOT_SERVING`` for ``streamrec.v1.Recommender`` until a
checked model is loaded (in the background, so a slow or failed load never keeps it from
starting); ``Recommend`` meanwhile answers from Redis' recent popularity, flagged degraded.
``stop`` gives requests in flight ``serve_grace_s`` to finish.

A process runs ``serve_listeners`` grpc.aio servers on one port (SO_REUSEPORT), all with the same
services, servicer and batcher: grpc.aio takes in one call at a time per server, so under a flood two
take in two at a time (docs/operations.md, "Serving", has what that buys). A port is checked free
first (``claim_port``), so that SO_REUSEPORT never shares it with a server already there.

Every listener has one interceptor, ``CoreBacklog``'s: it counts the calls taken in, and hands each
call's handler to the ``CallGuard``, which ends calls that hold a place without progress.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from streamrec.errors import ConfigError, LoadError
from streamrec.serve.batcher import BatcherConfig, MicroBatcher
from streamrec.serve.call_guard import CallGuard, GuardConfig
from streamrec.serve.core_backlog import CoreBacklog
from streamrec.serve.loader import RegistryLoader
from streamrec.serve.metrics import ServeMetrics
from streamrec.serve.servicer import RecommenderServicer, add_to_server, pb2, recommend_batch
from streamrec.serve.sessions import SessionSource
from streamrec.serve.state import ServingState, StateHolder
from streamrec.serve.validation import Limits
from streamrec.settings import Settings

__all__ = ["SERVICE_NAME", "RecommendServer", "claim_port", "run_server", "serve", "serve_processes"]

logger = logging.getLogger(__name__)

SERVICE_NAME = pb2.DESCRIPTOR.services_by_name["Recommender"].full_name  # "streamrec.v1.Recommender"


def _limit_threads() -> None:
    """One BLAS thread in the server: requests already run in parallel; oversubscribing 2 cores hurts p99.
    (onnxruntime sessions are created with 1 intra-op thread by the loaders.)"""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _loader(settings: Settings) -> RegistryLoader:
    threshold = settings.retrieval_threshold
    return RegistryLoader(settings.registry, fold_ranker=settings.serve_fold_ranker,
                          retrieve_above=None if threshold < 0 else threshold)


def _credentials(settings: Settings) -> grpc.ServerCredentials | None:
    if not settings.tls_cert:
        return None
    try:
        key, cert = Path(settings.tls_key).read_bytes(), Path(settings.tls_cert).read_bytes()
        ca = Path(settings.tls_client_ca).read_bytes() if settings.tls_client_ca else None
    except OSError as exc:
        raise ConfigError(f"cannot read a TLS file ({exc}); check STREAMREC_TLS_CERT, _KEY and _CLIENT_CA") from exc
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=ca, require_client_auth=ca is not None)


def claim_port(host: str, port: int) -> int:
    """``port`` (a free one for 0) after checking that no server holds it on ``host``: a socket bound
    without SO_REUSEPORT fails where another listens, so a group of listeners or processes that will
    share the port with SO_REUSEPORT does not join a server already there. (With SO_REUSEADDR, as gRPC
    binds: the connections of a server just stopped, in TIME_WAIT, do not count.) Raises ``ConfigError``.

    Between this check and the bind another process could take the port; only one with SO_REUSEPORT
    of the same user could then share it."""
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"cannot resolve STREAMREC_GRPC_HOST {host!r}: {exc}") from None
    for family, kind, proto, _name, address in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((address[0], port, *address[2:]))
            except OSError as exc:
                raise _cannot_listen(f"{host}:{port} ({exc.strerror})") from None
            port = port or int(probe.getsockname()[1])
    return port


def _bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None) -> int:
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError:  # grpcio >= 1.60 raises where older versions returned 0
        port = 0
    if not port:
        raise _cannot_listen(address)
    return int(port)


def _cannot_listen(where: str) -> ConfigError:
    return ConfigError(f"cannot listen on {where}; is another server there? set STREAMREC_GRPC_PORT")


class RecommendServer:
    """The whole server as one async resource: ``async with RecommendServer(settings) as s: ...``.

    ``port`` overrides ``settings.grpc_port`` (0 picks a free one; read ``bound_port``); ``loader``
    lets tests share one loaded registry between servers; ``clock`` (wall time, seconds) is the
    "now" of the session features, so servers given one clock answer a session identically.
    """

    def __init__(self, settings: Settings, *, port: int | None = None, metrics_port: int | None = None,
                 loader: RegistryLoader | None = None, reuse_port: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.clock = clock
        self.reuse_port = reuse_port  # share the port with the other processes of a ``serve_processes`` group
        self.port = settings.grpc_port if port is None else port
        self.metrics_port = settings.metrics_port if metrics_port is None else metrics_port
        self.loader = loader or _loader(settings)
        self.holder = StateHolder()
        self.metrics = ServeMetrics()
        self.bound_port = 0
        self.bound_metrics_port = 0
        self.problem: str | None = None  # why the latest load failed, if it did
        self._servers: list[grpc.aio.Server] = []  # the listeners
        self._health = health.aio.HealthServicer()
        self._sessions: SessionSource | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._watcher = None
        self._loaded = asyncio.Event()
        self._pubsub_task: asyncio.Task[None] | None = None
        self._guard_task: asyncio.Task[None] | None = None
        self.core_backlog: CoreBacklog | None = None  # gRPC core's calls not taken in yet (diagnostics, tests)
        self.call_guard: CallGuard | None = None  # ends calls that hold a place without progress

    async def start(self) -> RecommendServer:
        if self._servers:
            return self
        from streamrec.serve.watcher import ModelWatcher

        _limit_threads()
        s = self.settings
        self._sessions = SessionSource(s.redis_address, s.redis_prefix, timeout_s=s.redis_timeout_s,
                                       cluster=s.redis_is_cluster)
        self._pool = (ThreadPoolExecutor(max_workers=s.serve_workers, thread_name_prefix="streamrec-serve")
                      if s.serve_workers else None)
        limits = Limits(max_id_len=s.max_id_len)
        # max_batch 1 too: the batcher bounds the queue and sheds what waits too long
        config = BatcherConfig(s.serve_max_batch, s.serve_batch_wait_ms / 1e3, workers=max(s.serve_workers, 1),
                               gather_s=s.serve_batch_gather_ms / 1e3,
                               max_queue=s.serve_max_queue, queue_timeout_s=s.serve_queue_timeout_ms / 1e3)
        self.call_guard = guard = CallGuard(GuardConfig(s.serve_read_timeout_s, s.serve_max_streams,
                                                        s.serve_stream_idle_s),
                                            on_end=lambda reason: self.metrics.guarded.labels(reason).inc())
        self.core_backlog = backlog = CoreBacklog(handlers=guard.guarded)  # one interceptor for both
        batcher = MicroBatcher(recommend_batch, self._pool, config, on_batch=self.metrics.batch_size.observe,
                               backlog=backlog)
        servicer = RecommenderServicer(self.holder, self._sessions, self.metrics, limits, clock=self.clock,
                                       batcher=batcher, skip_pipeline=s.serve_skip_pipeline,
                                       stream_window=s.serve_stream_window)
        options = [("grpc.max_receive_message_length", s.serve_max_message_bytes),
                   ("grpc.max_send_message_length", 4 * 1024 * 1024),
                   # a second server on the same port must fail, not share it, unless it is one of a group
                   ("grpc.so_reuseport", int(self.reuse_port or s.serve_listeners > 1)),
                   ("grpc.keepalive_permit_without_calls", 1),
                   # a peer gone without a word (no FIN: a host or a NAT lost) is found within 80 s, not 2 h
                   ("grpc.keepalive_time_ms", 60_000),
                   ("grpc.keepalive_timeout_ms", 20_000),
                   # Past 1,000 calls waiting to be taken in, gRPC core drops new ones as CANCELLED, with no
                   # message (its random early detection, up to 3,000). Taken in, they get a clear
                   # RESOURCE_EXHAUSTED at ~0.085 ms each, so a burst waits in core a while longer instead.
                   # The bound stays, for memory: at most 10,000 calls of at most SERVE_MAX_MESSAGE_BYTES.
                   ("grpc.server.max_pending_requests", 5_000),
                   ("grpc.server.max_pending_requests_hard_limit", 10_000)]
        if s.serve_max_connection_age_s:  # GOAWAY, then the grace for calls in flight (streamrec.serve.call_guard)
            options += [("grpc.max_connection_age_ms", int(s.serve_max_connection_age_s * 1e3)),
                        ("grpc.max_connection_age_grace_ms", int(s.serve_grace_s * 1e3))]
        # maximum_concurrent_rpcs below (Settings.serve_listener_places): requests past this many in progress (a
        # running batch, plus the queue and those reading Redis, which the batcher bounds by MAX_QUEUE) are refused
        # by grpc.aio itself with RESOURCE_EXHAUSTED before any of our code runs, the cheapest refusal there is.
        # Every request let in costs loop turns, and grpc.aio takes in the next call only between them: a flood
        # let in waits in gRPC core's own queue, which the batcher drains between batches
        # (streamrec.serve.core_backlog, docs/operations.md).
        # Each listener holds its share of the calls in progress; the kernel spreads connections over them.
        port = claim_port(s.grpc_host, self.port) if s.serve_listeners > 1 and not self.reuse_port else self.port
        credentials = _credentials(s)
        # reflection is off where the schema should not be browsable (the Kubernetes ConfigMap)
        browsable = ((SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
                     if s.reflection else ())
        servers = []
        for _ in range(s.serve_listeners):
            server = backlog.server(options=options, maximum_concurrent_rpcs=s.serve_listener_places)
            add_to_server(servicer, server)
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            if browsable:
                reflection.enable_server_reflection(browsable, server)
            port = _bind(server, f"{s.grpc_host}:{port}", credentials)  # the others bind the port the first got
            servers.append(server)
        self.bound_port = port
        await self._health.set("", health_pb2.HealthCheckResponse.SERVING)
        await self._health.set(SERVICE_NAME, health_pb2.HealthCheckResponse.NOT_SERVING)
        for server in servers:
            await server.start()
        self._servers = servers
        if self.metrics_port:  # 0 = off
            self.bound_metrics_port = self.metrics.start_http(self.metrics_port, s.metrics_host)
        self._watcher = ModelWatcher(self.loader, self.holder, self.metrics, poll_s=s.registry_poll_s,
                                     on_change=self._on_change)
        self._watcher.start()
        self._pubsub_task = asyncio.get_running_loop().create_task(self._listen_for_publish())
        self._guard_task = asyncio.get_running_loop().create_task(guard.run())
        logger.info("server listening event=server_started address=%s:%s listeners=%s tls=%s mtls=%s reflection=%s "
                    "registry=%s", s.grpc_host, self.bound_port, len(servers), bool(credentials), bool(s.tls_client_ca),
                    s.reflection, s.registry)
        return self

    def _on_change(self, state: ServingState | None, problem: str | None) -> None:
        self.problem = problem
        status = health_pb2.HealthCheckResponse.SERVING if state is not None else \
            health_pb2.HealthCheckResponse.NOT_SERVING
        asyncio.get_running_loop().create_task(self._health.set(SERVICE_NAME, status))
        if state is not None:
            self._loaded.set()

    async def _listen_for_publish(self) -> None:
        """``PUBLISH <prefix>models <anything>`` (e.g. from a trainer) makes the watcher check at once."""
        import redis.asyncio as aioredis
        from redis.exceptions import RedisError

        channel = self.settings.models_channel
        while True:
            try:
                async with aioredis.Redis.from_url(self.settings.redis_address) as client:
                    async with client.pubsub() as pubsub:
                        await pubsub.subscribe(channel)
                        async for message in pubsub.listen():
                            if message.get("type") == "message" and self._watcher is not None:
                                self._watcher.notify()
            except (RedisError, OSError):
                await asyncio.sleep(self.settings.registry_poll_s)  # Redis is down; polling still works

    async def wait_loaded(self, timeout_s: float) -> ServingState:
        """The first loaded state (tests, benchmarks); raises TimeoutError."""
        await asyncio.wait_for(self._loaded.wait(), timeout_s)
        assert self.holder.state is not None
        return self.holder.state

    async def check_registry(self) -> bool:
        """Check the registry now and swap if there is a new, good version (tests; the watcher polls)."""
        assert self._watcher is not None, "start the server first"
        return await self._watcher.check()

    def watcher_refused(self) -> dict[str, str]:
        """Versions refused so far, with the reason (tests, diagnostics)."""
        return dict(self._watcher.refused) if self._watcher is not None else {}

    async def stop(self, grace_s: float | None = None) -> None:
        if not self._servers:
            return
        servers, self._servers = self._servers, []
        grace = self.settings.serve_grace_s if grace_s is None else grace_s
        try:
            await self._health.enter_graceful_shutdown()
            await asyncio.gather(*(server.stop(grace) for server in servers))
        finally:
            tasks = [task for task in (self._pubsub_task, self._guard_task) if task is not None]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._watcher is not None:
                await self._watcher.stop()
            if self._sessions is not None:
                await self._sessions.close()
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
            self.metrics.stop_http()
            logger.info("server stopped event=server_stopped grace_s=%s", grace)

    async def __aenter__(self) -> RecommendServer:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()


async def serve(settings: Settings, *, reuse_port: bool = False, loader: RegistryLoader | None = None) -> None:
    """Run until SIGINT or SIGTERM, then stop gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    server = RecommendServer(settings, reuse_port=reuse_port, loader=loader)
    try:
        await server.start()
        await stop.wait()
    finally:
        await server.stop()


def run_server(settings: Settings, reuse_port: bool = False, loader: RegistryLoader | None = None) -> None:
    """``serve`` on uvloop when it is installed (blocking). Only uvloop is optional: any other
    failure, a failed import inside the server included, propagates rather than restarting it."""
    _event_loop_runner()(serve(settings, reuse_port=reuse_port, loader=loader))


def _event_loop_runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def serve_processes(settings: Settings, processes: int) -> None:
    """``processes`` servers sharing one port (SO_REUSEPORT: the kernel spreads connections over them).

    One Python process runs one pipeline pass at a time at best (the GIL); several use every core.
    The release is loaded once, here, and the other processes are forked from this one after it:
    they start serving at once, and share its pages (the mapped arrays, the ONNX sessions, the
    Python objects, which ``gc.freeze`` keeps the collector from writing to) until one of them
    writes, so a process adds little memory. Each then watches the registry itself, and loads a
    new release on its own. Process ``i`` serves metrics on ``metrics_port + i`` (none when metrics
    are off). Blocks until SIGINT/SIGTERM, which every process gets and answers by stopping
    gracefully.
    """
    import gc
    import multiprocessing

    if processes < 1:
        raise ConfigError(f"--processes must be >= 1, got {processes}")
    if processes == 1:
        run_server(settings)
        return
    if settings.grpc_port == 0:
        raise ConfigError("several processes need a fixed port to share; set STREAMREC_GRPC_PORT or --port")
    claim_port(settings.grpc_host, settings.grpc_port)  # before the load: a port in use fails at once
    loader = _loader(settings)
    try:
        loader.load()  # kept by the loader: each process's first load returns it
    except LoadError as exc:
        logger.warning("no release loaded before starting the processes (%s); each loads one when it can", exc)
    gc.freeze()
    # fork, not spawn: the point is the shared pages. Nothing of gRPC or of an event loop exists yet.
    context = multiprocessing.get_context("fork")
    children = [context.Process(target=_serve_child, name=f"streamrec-serve-{i}", args=(
        settings.replace(metrics_port=settings.metrics_port + i if settings.metrics_port else 0), loader))
        for i in range(1, processes)]
    for child in children:
        child.start()
    try:
        run_server(settings, reuse_port=True, loader=loader)
    finally:
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)
        for child in children:
            child.join(settings.serve_grace_s + 5)


def _serve_child(settings: Settings, loader: RegistryLoader) -> None:
    run_server(settings, reuse_port=True, loader=loader)
