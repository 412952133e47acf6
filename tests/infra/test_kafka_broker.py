"""The KRaft cluster id handed to Kafka's storage tool."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator

import pytest

from streamrec.infra import kafka_broker
from streamrec.infra.kafka_broker import cluster_id


def test_an_id_that_would_read_as_an_option_is_drawn_again(monkeypatch: pytest.MonkeyPatch) -> None:
    dash = uuid.UUID(bytes=b"\xf8" + b"\x01" * 15)  # 0b111110.. encodes as "-", as one id in 64 does
    plain = uuid.UUID(bytes=b"\x10" * 16)
    assert base64.urlsafe_b64encode(dash.bytes).decode().startswith("-")
    draws: Iterator[uuid.UUID] = iter([dash, plain])
    monkeypatch.setattr(kafka_broker.uuid, "uuid4", lambda: next(draws))
    cid = cluster_id()
    assert cid == base64.urlsafe_b64encode(plain.bytes).decode().rstrip("=") and len(cid) == 22


def test_ids_are_22_url_safe_characters_of_16_random_bytes() -> None:
    ids = {cluster_id() for _ in range(2000)}
    assert len(ids) == 2000 and not any(i.startswith("-") for i in ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
