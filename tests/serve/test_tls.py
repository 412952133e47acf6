"""TLS and mTLS of the gRPC server, with a throwaway CA made by the ``openssl`` CLI for each test run.

The servers here load no model (an empty registry): what is under test is the transport, and an
answer from the Redis popularity fallback proves a call went through as well as a ranked one.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from streamrec.errors import ConfigError
from streamrec.serve.client import ClientTLS, open_channel, recommend
from streamrec.serve.servicer import pb2, pb2_grpc
from streamrec.settings import Settings
from tests.serve.helpers import write_session

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    rogue_cert: Path  # a client certificate from a CA the server does not trust
    rogue_key: Path


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)


def _ca(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
             "-subj", f"/CN={name}", "-keyout", key, "-out", cert,
             "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return cert, key


def _leaf(directory: Path, name: str, ca: tuple[Path, Path], extensions: str) -> tuple[Path, Path]:
    key, csr, cert, ext = (directory / f"{name}.{suffix}" for suffix in ("key", "csr", "pem", "ext"))
    ext.write_text(extensions + "\n")
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={name}",
             "-keyout", key, "-out", csr)
    _openssl("x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1], "-CAcreateserial", "-days", "1",
             "-out", cert, "-extfile", ext)
    return cert, key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, rogue_ca = _ca(d, "test-ca"), _ca(d, "rogue-ca")
    server = _leaf(d, "localhost", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    client = _leaf(d, "client", ca, "extendedKeyUsage=clientAuth")
    rogue = _leaf(d, "rogue", rogue_ca, "extendedKeyUsage=clientAuth")
    return Pki(ca[0], *server, *client, *rogue)


def tls_settings(isolated: Settings, tmp_path: Path, pki: Pki, *, mtls: bool) -> Settings:
    registry = tmp_path / "empty-registry"
    registry.mkdir()
    return isolated.replace(registry=registry, metrics_port=0, tls_cert=str(pki.server_cert),
                            tls_key=str(pki.server_key), tls_client_ca=str(pki.ca) if mtls else "")


def refused(channel: grpc.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        pb2_grpc.RecommenderStub(channel).Recommend(pb2.RecommendRequest(session_id="t-1", k=5), timeout=3)
    return info.value.code()  # type: ignore[attr-defined,no-any-return]


def test_a_tls_server_answers_tls_clients_and_refuses_plaintext(isolated: Settings, tmp_path: Path, pki: Pki,
                                                                server_factory: Any) -> None:
    settings = tls_settings(isolated, tmp_path, pki, mtls=False)
    write_session(settings, "t-1", ["50", "100", "181"])
    running = server_factory(settings, wait_loaded_s=None)
    with open_channel(running.target, ClientTLS(ca=pki.ca)) as channel:
        response = recommend(channel, "t-1", 5, include_seen=True, timeout_s=5)
    assert {item.item_id for item in response.items} <= {"50", "100", "181"} and response.items
    with grpc.insecure_channel(running.target) as channel:
        assert refused(channel) == grpc.StatusCode.UNAVAILABLE
    with open_channel(running.target, ClientTLS(ca=pki.rogue_cert)) as channel:  # a CA that did not sign it
        assert refused(channel) == grpc.StatusCode.UNAVAILABLE


def test_an_mtls_server_requires_a_client_certificate_it_trusts(isolated: Settings, tmp_path: Path, pki: Pki,
                                                                server_factory: Any) -> None:
    settings = tls_settings(isolated, tmp_path, pki, mtls=True)
    write_session(settings, "t-1", ["50", "100"])
    running = server_factory(settings, wait_loaded_s=None)
    with open_channel(running.target, ClientTLS(pki.ca, pki.client_cert, pki.client_key)) as channel:
        assert recommend(channel, "t-1", 5, include_seen=True, timeout_s=5).items
    for anonymous in (ClientTLS(ca=pki.ca), ClientTLS(pki.ca, pki.rogue_cert, pki.rogue_key)):
        with open_channel(running.target, anonymous) as channel:
            assert refused(channel) == grpc.StatusCode.UNAVAILABLE
    with grpc.insecure_channel(running.target) as channel:
        assert refused(channel) == grpc.StatusCode.UNAVAILABLE
    with open_channel(running.target, ClientTLS(ca=pki.ca)) as channel, pytest.raises(ConfigError, match="UNAVAILABLE"):
        recommend(channel, "t-1", 5, timeout_s=3)  # what `streamrec recommend` reports without --cert
    with pytest.raises(ConfigError, match="cannot read a TLS file"):
        open_channel(running.target, ClientTLS(pki.ca, tmp_path / "no-such.pem", pki.client_key))


def test_every_listener_of_a_tls_server_speaks_tls_only(isolated: Settings, tmp_path: Path, pki: Pki,
                                                        server_factory: Any) -> None:
    settings = tls_settings(isolated, tmp_path, pki, mtls=False).replace(serve_listeners=2)
    write_session(settings, "t-1", ["50", "100", "181"])
    running = server_factory(settings, wait_loaded_s=None)
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca.read_bytes())
    separate = [("grpc.use_local_subchannel_pool", 1)]  # a connection each, spread over the listeners by the kernel
    for _ in range(12):
        with grpc.secure_channel(running.target, credentials, options=separate) as channel:
            assert recommend(channel, "t-1", 5, include_seen=True, timeout_s=5).items
        with grpc.insecure_channel(running.target, options=separate) as channel:
            assert refused(channel) == grpc.StatusCode.UNAVAILABLE
    started = running.server.core_backlog.started()
    assert started is not None and len(started) == 2 and all(n > 0 for n in started), started
