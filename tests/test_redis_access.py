"""``rediss://`` checks the Redis server's host name against its certificate (redis-py >= 6; 5.x did not).

Real ``redis-server`` processes with TLS on loopback ports of their own, each with a certificate from
a throwaway CA (``openssl``, as ``tests/serve/test_tls.py`` makes them): one names 127.0.0.1 and
localhost, the other only another host. The shared Redis of ``streamrec infra up`` is not touched.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import ConnectionError as RedisConnectionError

from streamrec.redis_access import async_client
from tests.serve.test_tls import _ca, _leaf

pytestmark = pytest.mark.integration

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("redis-pki")
    ca = _ca(d, "redis-test-ca")
    right = _leaf(d, "redis-local", ca, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth")
    wrong = _leaf(d, "redis-elsewhere", ca, "subjectAltName=DNS:redis.example.com\nextendedKeyUsage=serverAuth")
    return {"ca": ca[0], "right_cert": right[0], "right_key": right[1], "wrong_cert": wrong[0], "wrong_key": wrong[1]}


@pytest.fixture(scope="module")
def tls_redis(pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], int]]:
    """``port(name)``: the TLS port of a redis-server presenting the ``right`` or the ``wrong`` certificate."""
    procs: list[subprocess.Popen[bytes]] = []
    ports: dict[str, int] = {}
    for name in ("right", "wrong"):
        port = _free_port()
        proc = subprocess.Popen([REDIS_SERVER, "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
                                 "--tls-cert-file", str(pki[f"{name}_cert"]), "--tls-key-file", str(pki[f"{name}_key"]),
                                 "--tls-ca-cert-file", str(pki["ca"]), "--tls-auth-clients", "no",
                                 "--save", "", "--appendonly", "no", "--dir", str(tmp_path_factory.mktemp(name))],
                                stdout=subprocess.DEVNULL)
        procs.append(proc)
        ports[name] = port
    try:
        for name, port in ports.items():  # wait until each accepts connections (or has died)
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    assert procs[0].poll() is None and procs[1].poll() is None, "redis-server --tls-port failed"
                    assert time.monotonic() < deadline, f"redis-server ({name}) did not listen on {port}"
                    time.sleep(0.05)
        yield ports.__getitem__
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)


def _ping(url: str) -> bool:
    async def ping() -> bool:
        async with async_client(url, cluster=False, socket_timeout=5, socket_connect_timeout=5) as client:
            return bool(await client.ping())
    return asyncio.run(ping())


def test_the_redis_client_is_one_that_checks_host_names() -> None:
    assert int(redis.__version__.split(".")[0]) >= 6, "pyproject.toml pins redis>=6: rediss:// checks host names"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_certificate_for_another_host_is_refused(tls_redis: Callable[[str], int], pki: dict[str, Path],
                                                   host: str) -> None:
    """Signed by the trusted CA, so only the host name check can refuse it."""
    url = f"rediss://{host}:{tls_redis('wrong')}/0?ssl_ca_certs={pki['ca']}"
    with pytest.raises(RedisConnectionError, match="(IP address|Hostname) mismatch"):
        _ping(url)  # the worker's and the server's client (streamrec.redis_access)
    with (pytest.raises(RedisConnectionError, match="(IP address|Hostname) mismatch"),
          redis.Redis.from_url(url, socket_timeout=5) as client):  # the plain client of the CLI's tools
        client.ping()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_a_certificate_that_names_the_host_is_accepted(tls_redis: Callable[[str], int], pki: dict[str, Path],
                                                       host: str) -> None:
    url = f"rediss://{host}:{tls_redis('right')}/0?ssl_ca_certs={pki['ca']}"
    assert _ping(url)
    with redis.Redis.from_url(url, socket_timeout=5) as client:
        assert client.ping()
