"""The mapping of Kafka address, TLS and SASL settings onto kafka-python and Faust (no broker needed)."""

from __future__ import annotations

import ssl

import faust
import pytest
from faust.types.auth import AuthProtocol, SASLMechanism

from streamrec.errors import ConfigError
from streamrec.kafka_security import (
    KafkaAccess,
    aiokafka_kwargs,
    faust_app_kwargs,
    faust_broker,
    faust_credentials,
    kafka_python_kwargs,
    parse_bootstrap,
)
from streamrec.settings import Settings

SASL = {"STREAMREC_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "STREAMREC_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "STREAMREC_KAFKA_USERNAME": "svc", "STREAMREC_KAFKA_PASSWORD": "s3cret-pw"}


def test_the_default_is_the_local_plaintext_broker() -> None:
    access = Settings.from_env({"STREAMREC_KAFKA_PORT": "29092"}).kafka_access
    assert kafka_python_kwargs(access) == {"bootstrap_servers": ["127.0.0.1:29092"], "security_protocol": "PLAINTEXT"}
    assert faust_app_kwargs(access) == {"broker": "kafka://127.0.0.1:29092"}


def test_a_bootstrap_list_overrides_host_and_port_everywhere() -> None:
    s = Settings.from_env({"STREAMREC_KAFKA_BOOTSTRAP_SERVERS": " k1:9092, k2.example:9093 "})
    assert s.kafka_bootstrap == "k1:9092,k2.example:9093"
    assert kafka_python_kwargs(s.kafka_access)["bootstrap_servers"] == ["k1:9092", "k2.example:9093"]
    assert faust_broker(s.kafka_access) == "kafka://k1:9092;kafka://k2.example:9093"


@pytest.mark.parametrize("servers", ["k1", "k1:", ":9092", "k1:port", "k1:70000", " , "])
def test_bad_bootstrap_entries_are_refused(servers: str) -> None:
    with pytest.raises(ConfigError, match="KAFKA_BOOTSTRAP_SERVERS"):
        parse_bootstrap(servers)


def test_ssl_verifies_the_brokers_with_the_given_ca() -> None:
    access = KafkaAccess(("k:9093",), "SSL")
    assert kafka_python_kwargs(access) == {"bootstrap_servers": ["k:9093"], "security_protocol": "SSL",
                                           "ssl_check_hostname": True}
    credentials = faust_credentials(access)
    assert isinstance(credentials, faust.SSLCredentials) and credentials.protocol is AuthProtocol.SSL
    assert credentials.context.verify_mode is ssl.CERT_REQUIRED and credentials.context.check_hostname
    with_ca = KafkaAccess(("k:9093",), "SSL", ssl_cafile="/etc/ca.pem")
    assert kafka_python_kwargs(with_ca)["ssl_cafile"] == "/etc/ca.pem"
    with pytest.raises(ConfigError, match="KAFKA_SSL_CAFILE"):
        faust_credentials(with_ca)  # the file is missing: said at start-up, with the variable


@pytest.mark.parametrize(("protocol", "faust_protocol"), [("SASL_PLAINTEXT", AuthProtocol.SASL_PLAINTEXT),
                                                          ("SASL_SSL", AuthProtocol.SASL_SSL)])
def test_sasl_passes_mechanism_and_credentials_to_both_libraries(protocol: str, faust_protocol: AuthProtocol) -> None:
    access = Settings.from_env(SASL | {"STREAMREC_KAFKA_SECURITY_PROTOCOL": protocol}).kafka_access
    kwargs = kafka_python_kwargs(access)
    assert kwargs["security_protocol"] == protocol and kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("svc", "s3cret-pw")
    assert ("ssl_check_hostname" in kwargs) == (protocol == "SASL_SSL")
    credentials = faust_app_kwargs(access)["broker_credentials"]
    assert isinstance(credentials, faust.SASLCredentials)
    assert credentials.protocol is faust_protocol and credentials.mechanism is SASLMechanism.SCRAM_SHA_512
    assert (credentials.username, credentials.password) == ("svc", "s3cret-pw")


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL"])
def test_the_bare_aiokafka_consumer_gets_the_same_access(protocol: str) -> None:
    env = {"STREAMREC_KAFKA_PORT": "29092"} | ({} if protocol == "PLAINTEXT" else SASL | {"STREAMREC_KAFKA_SECURITY_PROTOCOL": protocol})
    kwargs = aiokafka_kwargs(Settings.from_env(env).kafka_access)
    assert kwargs["security_protocol"] == protocol and kwargs["bootstrap_servers"] == ["127.0.0.1:29092"]
    assert isinstance(kwargs.get("ssl_context"), ssl.SSLContext) == (protocol == "SASL_SSL")
    if protocol != "PLAINTEXT":
        assert (kwargs["sasl_mechanism"], kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == (
            "SCRAM-SHA-512", "svc", "s3cret-pw")


@pytest.mark.parametrize(("env", "message"), [
    ({"STREAMREC_KAFKA_SECURITY_PROTOCOL": "TLS"}, "must be one of PLAINTEXT, SSL"),
    (SASL | {"STREAMREC_KAFKA_SASL_MECHANISM": "GSSAPI"}, "must be one of PLAIN, SCRAM"),
    (SASL | {"STREAMREC_KAFKA_PASSWORD": ""}, "needs STREAMREC_KAFKA_USERNAME and STREAMREC_KAFKA_PASSWORD"),
    ({"STREAMREC_KAFKA_USERNAME": "svc", "STREAMREC_KAFKA_PASSWORD": "pw"}, "only used with"),
    ({"STREAMREC_KAFKA_SSL_CAFILE": "/ca.pem"}, "KAFKA_SSL_CAFILE is only used with"),
])
def test_inconsistent_settings_are_refused_at_start_up(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_the_password_is_never_shown() -> None:
    s = Settings.from_env(SASL | {"STREAMREC_REDIS_URL": "rediss://app:redis-pw@r:6380/0"})
    shown = s.to_env(redact=True)
    assert shown["STREAMREC_KAFKA_PASSWORD"] == "***" and shown["STREAMREC_REDIS_URL"] == "rediss://app:***@r:6380/0"
    for text in (repr(s), repr(s.kafka_access), repr(faust_credentials(s.kafka_access)), str(shown)):
        assert "s3cret-pw" not in text and "redis-pw" not in text
    assert Settings.from_env(s.to_env()) == s  # a child process still gets the real ones
