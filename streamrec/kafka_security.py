"""How we reach Kafka: bootstrap servers, TLS and SASL, mapped onto each client library's options.

Two libraries talk to Kafka here, each with its own spelling of the same things: kafka-python
(the publisher, admin and inspection tools) and Faust on aiokafka (the worker). ``KafkaAccess``
holds the settings once, validated, and the functions below turn it into each library's
arguments, so a deployment that moves to ``SASL_SSL`` changes the environment, not the code.

The password is kept out of ``repr`` and out of every message raised here: settings and
exceptions end up in logs.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal, cast, get_args

from streamrec.errors import ConfigError

if TYPE_CHECKING:
    import faust

__all__ = [
    "SASL_MECHANISMS", "SECURITY_PROTOCOLS", "KafkaAccess", "SaslMechanism", "SecurityProtocol",
    "aiokafka_kwargs", "faust_app_kwargs", "faust_broker", "faust_credentials", "kafka_python_kwargs", "parse_bootstrap",
]

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
SECURITY_PROTOCOLS: Final[tuple[str, ...]] = get_args(SecurityProtocol)
SASL_MECHANISMS: Final[tuple[str, ...]] = get_args(SaslMechanism)

_ENV: Final = "STREAMREC_"


def parse_bootstrap(servers: str) -> tuple[str, ...]:
    """``"h1:9092, h2:9093"`` as ``("h1:9092", "h2:9093")``; every entry needs a host and a port."""
    entries = tuple(s.strip() for s in servers.split(",") if s.strip())
    if not entries:
        raise ConfigError(f"{_ENV}KAFKA_BOOTSTRAP_SERVERS is empty; give host:port[,host:port...]")
    for entry in entries:
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(f"{_ENV}KAFKA_BOOTSTRAP_SERVERS entry {entry!r} is not host:port")
    return entries


@dataclass(frozen=True)
class KafkaAccess:
    """Where the brokers are and how to authenticate to them.

    ``ssl_cafile`` is a PEM bundle of the CA that signed the brokers' certificates; empty means
    the system's trust store. Brokers' host names are always checked against their certificates.
    """

    servers: tuple[str, ...] = ("127.0.0.1:19092",)
    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "PLAIN"
    username: str = ""
    password: str = field(default="", repr=False)
    ssl_cafile: str = ""

    def __post_init__(self) -> None:
        if self.protocol not in SECURITY_PROTOCOLS:
            raise ConfigError(f"{_ENV}KAFKA_SECURITY_PROTOCOL must be one of {', '.join(SECURITY_PROTOCOLS)}; "
                              f"got {self.protocol!r}")
        if self.sasl_mechanism not in SASL_MECHANISMS:
            raise ConfigError(f"{_ENV}KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}; "
                              f"got {self.sasl_mechanism!r}")
        if self.sasl and not (self.username and self.password):
            raise ConfigError(f"{_ENV}KAFKA_SECURITY_PROTOCOL={self.protocol} needs {_ENV}KAFKA_USERNAME and "
                              f"{_ENV}KAFKA_PASSWORD")
        if not self.sasl and (self.username or self.password):
            raise ConfigError(f"{_ENV}KAFKA_USERNAME and {_ENV}KAFKA_PASSWORD are only used with "
                              f"{_ENV}KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT or SASL_SSL; got {self.protocol}")
        if self.ssl_cafile and not self.tls:
            raise ConfigError(f"{_ENV}KAFKA_SSL_CAFILE is only used with {_ENV}KAFKA_SECURITY_PROTOCOL=SSL or "
                              f"SASL_SSL; got {self.protocol}")

    @classmethod
    def parse(cls, *, bootstrap_servers: str, default_server: str, protocol: str, sasl_mechanism: str,
              username: str, password: str, ssl_cafile: str) -> KafkaAccess:
        """From the ``STREAMREC_KAFKA_*`` strings (``Settings.kafka_access``): ``bootstrap_servers``,
        when not empty, replaces ``default_server``; every value is checked (``ConfigError``)."""
        servers = parse_bootstrap(bootstrap_servers) if bootstrap_servers else (default_server,)
        # The casts are checked by __post_init__, which refuses any other string.
        return cls(servers, cast(SecurityProtocol, protocol), cast(SaslMechanism, sasl_mechanism), username,
                   password, ssl_cafile)

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def bootstrap(self) -> str:
        return ",".join(self.servers)


def kafka_python_kwargs(access: KafkaAccess) -> dict[str, Any]:
    """Arguments for ``KafkaProducer``, ``KafkaConsumer`` and ``KafkaAdminClient`` alike."""
    kwargs: dict[str, Any] = {"bootstrap_servers": list(access.servers), "security_protocol": access.protocol}
    if access.tls:
        kwargs |= {"ssl_check_hostname": True}
        if access.ssl_cafile:
            kwargs["ssl_cafile"] = access.ssl_cafile
    return kwargs | _sasl_kwargs(access)


def aiokafka_kwargs(access: KafkaAccess) -> dict[str, Any]:
    """Arguments for aiokafka's ``AIOKafkaConsumer`` (the client under Faust), used bare by ``bench ingest --layers``."""
    kwargs: dict[str, Any] = {"bootstrap_servers": list(access.servers), "security_protocol": access.protocol}
    if access.tls:
        kwargs["ssl_context"] = _ssl_context(access)
    return kwargs | _sasl_kwargs(access)


def _sasl_kwargs(access: KafkaAccess) -> dict[str, Any]:
    if not access.sasl:
        return {}
    return {"sasl_mechanism": access.sasl_mechanism, "sasl_plain_username": access.username,
            "sasl_plain_password": access.password}


def faust_broker(access: KafkaAccess) -> str:
    """Faust's ``broker`` URL list: one ``kafka://host:port`` per server, ``;``-separated.

    The scheme names Faust's aiokafka transport, not the security protocol: TLS and SASL travel
    in ``broker_credentials`` (``faust_credentials``).
    """
    return ";".join(f"kafka://{server}" for server in access.servers)


def faust_credentials(access: KafkaAccess) -> faust.types.auth.CredentialsT | None:
    """``broker_credentials`` for ``faust.App``; None for PLAINTEXT."""
    import faust

    if access.protocol == "PLAINTEXT":
        return None
    context = _ssl_context(access) if access.tls else None
    if not access.sasl:
        return faust.SSLCredentials(context)
    return faust.SASLCredentials(username=access.username, password=access.password, ssl_context=context,
                                 mechanism=access.sasl_mechanism)


def faust_app_kwargs(access: KafkaAccess) -> Mapping[str, Any]:
    """The broker-related keyword arguments of ``faust.App``."""
    credentials = faust_credentials(access)
    return {"broker": faust_broker(access)} | ({"broker_credentials": credentials} if credentials else {})


def _ssl_context(access: KafkaAccess) -> ssl.SSLContext:
    # Built here rather than by faust.SSLCredentials(cafile=...), which cannot create a context
    # without an explicit purpose (faust-streaming 0.15).
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=access.ssl_cafile or None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot read {_ENV}KAFKA_SSL_CAFILE={access.ssl_cafile!r}: {exc}") from exc
    return context
