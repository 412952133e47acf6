"""The server against the real Redis (``streamrec infra up``) and a real registry, over real gRPC."""

from __future__ import annotations

import contextlib
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from streamrec.serve.servicer import pb2, pb2_grpc
from streamrec.settings import Settings
from tests.serve.helpers import ids, publish_copy, settings_for, write_session

pytestmark = pytest.mark.integration

SERVICE = "streamrec.v1.Recommender"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def health(channel: grpc.Channel, service: str = SERVICE) -> int:
    return int(health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service),
                                                          timeout=2).status)


@pytest.fixture
def running(isolated: Settings, registry: Path, server_factory: Any) -> Any:
    return server_factory(settings_for(isolated, registry))


def modelless(isolated: Settings, tmp_path: Path, server_factory: Any, metrics_port: int | None = None,
              **changes: Any) -> Any:
    """A server on an empty registry (nothing to load: cheap), for what needs no model."""
    registry = tmp_path / "empty-registry"
    registry.mkdir()
    return server_factory(settings_for(isolated, registry, **changes), wait_loaded_s=None, metrics_port=metrics_port)


def test_a_session_in_redis_changes_the_answer_and_unknown_sessions_get_a_cold_start(isolated: Settings,
                                                                                      running: Any) -> None:
    with running.channel() as channel:
        stub = pb2_grpc.RecommenderStub(channel)
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING
        cold = stub.Recommend(pb2.RecommendRequest(session_id="s-1", k=10), timeout=5)
        assert cold.cold_start and not cold.degraded and len(cold.items) == 10
        assert cold.model_versions["deepfm"] == running.server.holder.state.ranker_version

        write_session(isolated, "s-1", ["50", "181", "172", "no-such-item"])  # Star Wars, Return of the Jedi...
        warm = stub.Recommend(pb2.RecommendRequest(session_id="s-1", k=10), timeout=5)
        assert not warm.cold_start and not warm.degraded and len(warm.items) == 10
        assert ids(warm) != ids(cold)
        assert not {"50", "181", "172"} & set(ids(warm)), "seen items are excluded by default"
        assert all(i.sources for i in warm.items) and warm.items[0].score >= warm.items[-1].score

        excluded = stub.Recommend(pb2.RecommendRequest(session_id="s-1", k=10, exclude_item_ids=ids(warm)[:3]),
                                  timeout=5)
        assert not set(ids(warm)[:3]) & set(ids(excluded))

        write_session(isolated, "s-2", ["unknown-a", "unknown-b"])
        only_unknown = stub.Recommend(pb2.RecommendRequest(session_id="s-2", k=5), timeout=5)
        assert only_unknown.cold_start and len(only_unknown.items) == 5

        stateless = stub.RecommendForSequence(
            pb2.RecommendForSequenceRequest(item_ids=["50", "181", "172", "no-such-item"], k=10), timeout=5)
        assert len(stateless.items) == 10 and not stateless.cold_start

        similar = stub.SimilarItems(pb2.SimilarItemsRequest(item_id="50", k=7), timeout=5)
        assert len(similar.items) == 7 and "50" not in ids(similar)


def test_health_and_reflection_name_the_service(running: Any) -> None:
    with running.channel() as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answer = next(iter(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                     timeout=5)))
        names = {s.name for s in answer.list_services_response.service}
        assert {SERVICE, "grpc.health.v1.Health"} <= names


@pytest.mark.parametrize(("method", "request_", "needle"), [
    ("Recommend", pb2.RecommendRequest(session_id="s", k=0), "k must be between 1 and 1000"),
    ("Recommend", pb2.RecommendRequest(session_id="s", k=1001), "k must be between 1 and 1000"),
    ("Recommend", pb2.RecommendRequest(session_id="", k=10), "session_id is required"),
    ("Recommend", pb2.RecommendRequest(session_id="x" * 129, k=10), "session_id is 129 bytes long"),
    ("Recommend", pb2.RecommendRequest(session_id="s", k=10, exclude_item_ids=[""]), r"exclude_item_ids\[0\]"),
    ("RecommendForSequence", pb2.RecommendForSequenceRequest(item_ids=["1", "x" * 200], k=5), r"item_ids\[1\]"),
    ("SimilarItems", pb2.SimilarItemsRequest(item_id="", k=5), "item_id is required"),
    ("SimilarItems", pb2.SimilarItemsRequest(item_id="50", k=5000), "k must be between"),
])
def test_invalid_requests_get_invalid_argument(running: Any, method: str, request_: Any, needle: str) -> None:
    with running.channel() as channel:
        call = getattr(pb2_grpc.RecommenderStub(channel), method)
        with pytest.raises(grpc.RpcError) as info:
            call(request_, timeout=5)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(needle, info.value.details())


def test_bytes_that_are_not_the_request_message_get_invalid_argument(isolated: Settings, tmp_path: Path,
                                                                   server_factory: Any) -> None:
    """Not UNKNOWN ("Unexpected DecodeError"), which grpc.aio answers when a request deserializer raises."""
    running = modelless(isolated, tmp_path, server_factory)
    garbage = [b"\xff\xff not protobuf", b"\x0a\x02\xff\xfe"]  # corrupt wire format; a string field of bad UTF-8
    with running.channel() as channel:
        for method in ("Recommend", "RecommendForSequence", "SimilarItems"):
            call = channel.unary_unary(f"/{SERVICE}/{method}", request_serializer=None, response_deserializer=None)
            for raw in garbage:
                with pytest.raises(grpc.RpcError) as info:
                    call(raw, timeout=5)
                assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (method, raw, info.value.details())
                assert f"not a valid streamrec.v1.{method}Request message" in info.value.details()
            assert running.server.metrics.errors.labels(method, "INVALID_ARGUMENT")._value.get() == len(garbage)
        health_stub = health_pb2_grpc.HealthStub(channel)  # the server is none the worse
        assert health_stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status == \
            health_pb2.HealthCheckResponse.SERVING


def test_a_stream_answers_as_recommend_does_in_order_and_a_bad_message_fails_alone(isolated: Settings,
                                                                                   running: Any) -> None:
    for n in range(3):
        write_session(isolated, f"st-{n}", ["50", "181", str(172 + n)])
    requests = [pb2.RecommendRequest(session_id=f"st-{n % 3}", k=10, exclude_item_ids=["1"] * (n // 3))
                for n in range(6)] + [pb2.RecommendRequest(session_id="st-unknown", k=5)]
    raw = [r.SerializeToString() for r in requests]
    raw.insert(2, b"\xff\xff not protobuf")
    with running.channel() as channel:
        stub = pb2_grpc.RecommenderStub(channel)
        unary = [stub.Recommend(r, timeout=5) for r in requests]
        call = channel.stream_stream(f"/{SERVICE}/RecommendStream", request_serializer=None,
                                     response_deserializer=pb2.RecommendStreamResponse.FromString)
        answers = list(call(iter(raw), timeout=30))
        assert [a.code for a in answers] == [0, 0, grpc.StatusCode.INVALID_ARGUMENT.value[0], 0, 0, 0, 0, 0]
        assert "not a valid streamrec.v1.RecommendRequest message" in answers[2].message
        streamed = [a.response for a in answers[:2] + answers[3:]]
        assert [ids(a) for a in streamed] == [ids(u) for u in unary]  # the same answers, in the requests' order
        assert [a.cold_start for a in streamed] == [False] * 6 + [True]

        cut = stub.RecommendStream(iter(requests * 50), timeout=30)  # a client that leaves mid-stream
        assert next(cut).code == 0
        cut.cancel()
        assert ids(stub.Recommend(requests[0], timeout=5)) == ids(unary[0])  # the server is none the worse
    assert running.server.metrics.responses.labels("RecommendStream", "OK")._value.get() >= 7


def test_reflection_can_be_turned_off(isolated: Settings, tmp_path: Path, server_factory: Any) -> None:
    running = modelless(isolated, tmp_path, server_factory, reflection=False)
    with running.channel() as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            next(iter(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                timeout=5)))
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
        assert health(channel, "") == health_pb2.HealthCheckResponse.SERVING  # the other services are there


def test_metrics_listen_on_the_configured_host(isolated: Settings, tmp_path: Path, server_factory: Any) -> None:
    """STREAMREC_METRICS_HOST: 0.0.0.0 in the Kubernetes and Compose configs, so a scraper can reach it."""
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))  # any loopback address other than the default 127.0.0.1
        port = int(s.getsockname()[1])
    running = modelless(isolated, tmp_path, server_factory, metrics_host="127.0.0.2", metrics_port=port)
    assert running.server.bound_metrics_port == port
    text = urllib.request.urlopen(f"http://127.0.0.2:{port}/metrics", timeout=5).read().decode()
    assert "streamrec_model_loaded" in text
    with pytest.raises(OSError):  # and on that address only
        socket.create_connection(("127.0.0.1", port), timeout=5).close()


def test_unknown_fields_and_oversized_messages_are_refused(running: Any) -> None:
    raw = pb2.RecommendRequest(session_id="s", k=5).SerializeToString() + bytes([(15 << 3) | 0, 7])
    with running.channel() as channel:
        call = channel.unary_unary(f"/{SERVICE}/Recommend", request_serializer=None,
                                   response_deserializer=pb2.RecommendResponse.FromString)
        with pytest.raises(grpc.RpcError) as info:
            call(raw, timeout=5)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "unknown field number(s) 15" in info.value.details()
        huge = pb2.RecommendForSequenceRequest(item_ids=["1"] * 40_000, k=5)  # > 64 KiB
        with pytest.raises(grpc.RpcError) as info:
            pb2_grpc.RecommenderStub(channel).RecommendForSequence(huge, timeout=5)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_metrics_are_exported(isolated: Settings, registry: Path, server_factory: Any) -> None:
    port = free_port()
    running = server_factory(settings_for(isolated, registry), metrics_port=port)
    with running.channel() as channel:
        stub = pb2_grpc.RecommenderStub(channel)
        stub.Recommend(pb2.RecommendRequest(session_id="m", k=3), timeout=5)
        with pytest.raises(grpc.RpcError):
            stub.Recommend(pb2.RecommendRequest(session_id="m", k=0), timeout=5)
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'streamrec_rpc_latency_seconds_count{rpc="Recommend"} 2.0' in text
    assert 'streamrec_rpc_errors_total{code="INVALID_ARGUMENT",rpc="Recommend"} 1.0' in text
    version = running.server.holder.state.ranker_version
    assert f'streamrec_model_version_info{{model="deepfm",version="{version}"}} 1.0' in text


@contextlib.contextmanager
def _under_load(running: Any, clients: int = 3) -> Iterator[tuple[list[str], list[str]]]:
    """Clients asking ``RecommendForSequence`` in a loop from their first answer on, while the body runs
    and for 20 answers after it: the ranker version of every answer, in order, and every failure."""
    failures: list[str] = []
    versions: list[str] = []
    stop = threading.Event()
    answered = threading.Event()

    def load() -> None:
        with running.channel() as channel:
            stub = pb2_grpc.RecommenderStub(channel)
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    r = stub.RecommendForSequence(pb2.RecommendForSequenceRequest(item_ids=["50", str(n % 300 + 1)],
                                                                                   k=10), timeout=5)
                    versions.append(r.model_versions["deepfm"])
                    assert len(r.items) == 10
                    answered.set()
                except (grpc.RpcError, AssertionError) as exc:
                    failures.append(repr(exc))

    threads = [threading.Thread(target=load) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        assert answered.wait(30), f"no answer under load: {failures[:3]}"
        yield versions, failures
        end = len(versions) + 20
        deadline = time.monotonic() + 30
        while len(versions) < end and time.monotonic() < deadline:  # answers from after the body, too
            time.sleep(0.05)
    finally:
        stop.set()
        for t in threads:
            t.join()


def _wait_for_version(running: Any, version: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while running.server.holder.state.ranker_version != version and time.monotonic() < deadline:
        time.sleep(0.1)  # the watcher polls every 0.5 s


def test_hot_swap_under_load_fails_no_request(running: Any, registry: Path) -> None:
    old = running.server.holder.state.ranker_version
    with _under_load(running) as (versions, failures):
        publish_copy(registry, "29990101T000000Z")
        _wait_for_version(running, "29990101T000000Z")
    assert running.server.holder.state.ranker_version == "29990101T000000Z"
    assert failures == []
    assert versions[0] == old and versions[-1] == "29990101T000000Z" and len(versions) > 20


def test_a_stream_open_across_a_hot_swap_fails_no_request(isolated: Settings, running: Any, registry: Path) -> None:
    write_session(isolated, "hs-1", ["50", "181", "172"])
    old = running.server.holder.state.ranker_version
    swapped = threading.Event()

    def requests() -> Iterator[Any]:  # about 200 a second, until 20 after the swap
        after = 0
        while after < 20:
            after += swapped.is_set()
            time.sleep(0.005)
            yield pb2.RecommendRequest(session_id="hs-1", k=10)

    with running.channel() as channel:
        answers = pb2_grpc.RecommenderStub(channel).RecommendStream(requests(), timeout=120)
        first = next(answers)
        publish_copy(registry, "29990101T000000Z")
        _wait_for_version(running, "29990101T000000Z")
        swapped.set()
        rest = list(answers)
    codes = {a.code for a in [first, *rest]}
    versions = [a.response.model_versions["deepfm"] for a in [first, *rest]]
    assert codes == {0} and versions[0] == old and versions[-1] == "29990101T000000Z"
    assert all(len(a.response.items) == 10 for a in rest)


def test_a_hot_swap_from_deepfm_to_dcnv2_under_load_fails_no_request(running: Any, registry: Path,
                                                                      base_settings: Settings) -> None:
    """The ranker's network changes with a release: the server moves from DeepFM's folded tables (summed
    per item) to DCN-v2's ONNX graph through the same loader and swap, while clients keep asking."""
    from streamrec import registry as reg
    from streamrec.eval.protocols import make_split
    from streamrec.offline.assemble import PipelineSpec, TwoStage, publish_ranker
    from streamrec.offline.ranker_fit import RankerConfig
    from streamrec.rank.folded import PerItemDeepFM

    def folded() -> bool:
        return isinstance(running.server.holder.state.pipeline.ranker, PerItemDeepFM)

    parts, vocab = make_split("ml-100k", "loo", base_settings.data_dir)  # the split the served release came from
    spec = PipelineSpec(sources=("itemknn", "mf", "pop", "content"), ranker=RankerConfig(arch="dcnv2", epochs=2))
    fitted = TwoStage(spec).fit_split(parts)  # before the load starts: the swap, not the fit, is under test
    old = running.server.holder.state.ranker_version
    assert folded()
    with _under_load(running) as (versions, failures):
        new = publish_ranker(fitted.ranker_fit, fitted._fitted(), parts, vocab=vocab, dataset="ml-100k",
                             metrics={}, registry=registry).name
        _wait_for_version(running, new)
    assert reg.read_manifest(registry / reg.RANKER / new)["architecture"] == "dcnv2"
    assert running.server.holder.state.ranker_version == new and not folded()  # served by the ONNX graph
    assert failures == []
    assert versions[0] == old and versions[-1] == new and len(versions) > 20


def test_a_corrupt_version_is_refused_and_the_old_one_keeps_serving(running: Any, registry: Path) -> None:
    old = running.server.holder.state.ranker_version
    publish_copy(registry, "29990101T000000Z", corrupt=True)
    assert running.call(running.server.check_registry()) is False
    assert "sha256" in running.server.watcher_refused()["29990101T000000Z"]
    with running.channel() as channel:
        r = pb2_grpc.RecommenderStub(channel).RecommendForSequence(
            pb2.RecommendForSequenceRequest(item_ids=["50"], k=5), timeout=5)
        assert r.model_versions["deepfm"] == old and len(r.items) == 5
        assert health(channel) == health_pb2.HealthCheckResponse.SERVING
    publish_copy(registry, "29990102T000000Z", source=old)  # a good one after it is taken
    assert running.call(running.server.check_registry()) is True
    assert running.server.holder.state.ranker_version == "29990102T000000Z"


def test_a_server_whose_model_fails_to_load_starts_and_says_so(isolated: Settings, registry: Path,
                                                               server_factory: Any) -> None:
    publish_copy(registry, "29990101T000000Z", corrupt=True)
    running = server_factory(settings_for(isolated, registry), wait_loaded_s=None)
    deadline = time.monotonic() + 30
    while not running.server.watcher_refused() and time.monotonic() < deadline:
        time.sleep(0.1)
    with running.channel() as channel:
        assert health(channel) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert health(channel, "") == health_pb2.HealthCheckResponse.SERVING
        write_session(isolated, "pop-1", ["50", "181"])  # gives Redis a recent popularity
        r = pb2_grpc.RecommenderStub(channel).Recommend(pb2.RecommendRequest(session_id="x", k=2), timeout=5)
        assert r.degraded and set(ids(r)) <= {"50", "181"} and len(r.items) == 2
        with pytest.raises(grpc.RpcError) as info:
            pb2_grpc.RecommenderStub(channel).SimilarItems(pb2.SimilarItemsRequest(item_id="50", k=2), timeout=5)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """A redis-server of this test's own, so stopping it leaves the shared one alone."""
    port = free_port()
    proc = subprocess.Popen([shutil.which("redis-server") or "redis-server", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    yield proc, port
    if proc.poll() is None:
        proc.terminate()
        proc.wait(10)


def test_redis_stopped_mid_test_gives_degraded_answers_quickly(isolated: Settings, registry: Path,
                                                               server_factory: Any, own_redis: Any) -> None:
    proc, port = own_redis
    settings = settings_for(isolated, registry, redis_url=f"redis://127.0.0.1:{port}/0")
    running = server_factory(settings)
    write_session(settings, "d-1", ["50", "181", "172"])
    with running.channel() as channel:
        stub = pb2_grpc.RecommenderStub(channel)
        before = stub.Recommend(pb2.RecommendRequest(session_id="d-1", k=10), timeout=5)
        assert not before.degraded and not before.cold_start
        proc.terminate()
        proc.wait(10)
        for _ in range(20):
            start = time.perf_counter()
            after = stub.Recommend(pb2.RecommendRequest(session_id="d-1", k=10), timeout=5)
            assert after.degraded and len(after.items) == 10
            assert time.perf_counter() - start < 0.5, "a dead Redis must not stall requests"
        assert stub.RecommendForSequence(pb2.RecommendForSequenceRequest(item_ids=["50"], k=3), timeout=5).items
    assert running.server.metrics.degraded.labels("Recommend", "redis")._value.get() >= 20


def test_servers_of_a_group_share_their_port_and_no_other_server_can_take_it(isolated: Settings,
                                                                             registry: Path) -> None:
    """What ``streamrec serve --processes N`` relies on: SO_REUSEPORT for the group's servers only, and
    a server of several listeners, which binds with SO_REUSEPORT too, does not join them."""
    import asyncio

    from streamrec.errors import ConfigError
    from streamrec.serve.loader import RegistryLoader
    from streamrec.serve.server import RecommendServer, claim_port

    settings = settings_for(isolated, registry)
    port = free_port()
    loader = RegistryLoader(registry)

    async def main() -> None:
        group = [RecommendServer(settings, port=port, loader=loader, reuse_port=True) for _ in range(2)]
        try:
            for server in group:
                await server.start()
                await server.wait_loaded(120)
            assert [s.bound_port for s in group] == [port, port]
            for listeners in (1, 2):
                with pytest.raises(ConfigError, match="cannot listen"):
                    await RecommendServer(settings.replace(serve_listeners=listeners), port=port, loader=loader).start()
            with pytest.raises(ConfigError, match="cannot listen"):
                claim_port("127.0.0.1", port)  # what `serve --processes N` checks before it forks
            request = pb2.RecommendForSequenceRequest(item_ids=["1", "2"], k=3)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                assert len((await pb2_grpc.RecommenderStub(channel).RecommendForSequence(request, timeout=10)).items) == 3
        finally:
            for server in group:
                await server.stop(0)

    asyncio.run(main())


def test_the_listeners_of_a_process_share_its_port_and_each_serves_every_service(isolated: Settings, registry: Path,
                                                                                 server_factory: Any) -> None:
    from streamrec.serve.server import claim_port

    settings = settings_for(isolated, registry, serve_listeners=2)
    write_session(settings, "l-1", ["50", "100", "181"])
    running = server_factory(settings)
    port = running.server.bound_port
    # separate connections, which the kernel spreads over the listeners: 16 all on one is a 1 in 32,768 chance
    channels = [grpc.insecure_channel(running.target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(16)]
    try:
        for channel in channels:
            answer = pb2_grpc.RecommenderStub(channel).Recommend(pb2.RecommendRequest(session_id="l-1", k=5), timeout=5)
            assert len(answer.items) == 5 and not answer.cold_start
            assert health(channel) == health_pb2.HealthCheckResponse.SERVING
            listing = reflection_pb2.ServerReflectionRequest(list_services="")
            reply = next(iter(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(
                iter([listing]), timeout=5)))
            assert SERVICE in {s.name for s in reply.list_services_response.service}
    finally:
        for channel in channels:
            channel.close()
    started = running.server.core_backlog.started()
    assert started is not None and len(started) == 2 and all(n >= 3 for n in started), started
    running.call(running.server.stop(1.0))
    assert claim_port("127.0.0.1", port) == port  # every listener let go of it


def test_claiming_a_port_fails_where_a_server_listens_and_not_for_connections_it_left(tmp_path: Path) -> None:
    from streamrec.errors import ConfigError
    from streamrec.serve.server import claim_port

    with socket.socket() as held:  # a server of a group, as gRPC binds it: SO_REUSEADDR, SO_REUSEPORT, listening
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            claim_port("127.0.0.1", port)
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = held.accept()
            accepted.close()  # the server's side closes first: its end waits in TIME_WAIT
            client.recv(1)
    assert claim_port("127.0.0.1", port) == port  # a restarted server may have the port at once
    assert claim_port("127.0.0.1", 0) > 0
    with pytest.raises(ConfigError, match="cannot resolve"):
        claim_port("no-such-host.invalid", 1)


def test_calls_that_hold_places_without_progress_lock_no_one_out(isolated: Settings, registry: Path,
                                                                 server_factory: Any) -> None:
    """Idle streams and unary calls whose request never comes, against 8 places (streamrec.serve.call_guard):
    streams past the cap are refused, the rest are ended with a clear status, and Recommend is served."""
    settings = settings_for(isolated, registry, serve_max_in_flight=8, serve_max_streams=4,
                            serve_read_timeout_s=1.0, serve_stream_idle_s=5.0)
    write_session(settings, "g-1", ["50", "100", "181"])
    running = server_factory(settings)
    quiet = threading.Event()

    def silent() -> Iterator[bytes]:  # a client that opens a call and sends nothing
        quiet.wait(120)
        return
        yield b""

    channels = [grpc.insecure_channel(running.target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(11)]
    request = pb2.RecommendRequest(session_id="g-1", k=5)
    try:
        def recommend_all() -> None:
            stub = pb2_grpc.RecommenderStub(channels[-1])
            assert all(len(stub.Recommend(request, timeout=10).items) == 5 for _ in range(20))

        streams = [channel.stream_stream(f"/{SERVICE}/RecommendStream")(silent()) for channel in channels[:6]]
        open_ = _wait_for_statuses(streams, 2, grpc.StatusCode.RESOURCE_EXHAUSTED)
        recommend_all()  # 4 of 8 places are the streams'
        held = [channel.stream_stream(f"/{SERVICE}/Recommend")(silent()) for channel in channels[6:10]]
        for call in held:
            assert call.code() == grpc.StatusCode.DEADLINE_EXCEEDED, call.details()
            assert "STREAMREC_SERVE_READ_TIMEOUT_S" in call.details()
        for call in open_:
            assert call.code() == grpc.StatusCode.UNAVAILABLE, call.details()
            assert "idle for 5 s" in call.details()
        recommend_all()
    finally:
        quiet.set()
        for channel in channels:
            channel.close()
    guarded = running.server.metrics.guarded
    assert [guarded.labels(r)._value.get() for r in ("too_many_streams", "read_timeout", "stream_idle")] == [2, 4, 4]


def _wait_for_statuses(calls: list[Any], count: int, code: grpc.StatusCode, timeout_s: float = 30.0) -> list[Any]:
    """Wait until ``count`` of ``calls`` have ended with ``code``; the others, still open."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ended = [c for c in calls if c.done()]
        if len(ended) >= count:
            assert [c.code() for c in ended] == [code] * count, [(c.code(), c.details()) for c in ended]
            return [c for c in calls if not c.done()]
        time.sleep(0.01)
    raise AssertionError(f"only {sum(c.done() for c in calls)} of {len(calls)} calls ended in {timeout_s} s")
