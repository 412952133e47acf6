"""A small client of ``streamrec.v1.Recommender`` for people (``streamrec recommend``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from streamrec.errors import ConfigError
from streamrec.serve.protos import load_stubs

__all__ = ["ClientTLS", "dataset_of", "format_response", "open_channel", "recommend", "titles_of"]

pb2, pb2_grpc = load_stubs()


@dataclass(frozen=True)
class ClientTLS:
    ca: Path | None = None  # the CA that signed the server's certificate; None = plaintext
    cert: Path | None = None  # client certificate and key, for a server that requires mTLS
    key: Path | None = None


def open_channel(target: str, tls: ClientTLS = ClientTLS()) -> grpc.Channel:
    if tls.ca is None:
        return grpc.insecure_channel(target)
    try:
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.ca.read_bytes(), private_key=tls.key.read_bytes() if tls.key else None,
            certificate_chain=tls.cert.read_bytes() if tls.cert else None)
    except OSError as exc:
        raise ConfigError(f"cannot read a TLS file: {exc}") from exc
    return grpc.secure_channel(target, credentials)


def recommend(channel: grpc.Channel, session_id: str, k: int, *, exclude: tuple[str, ...] = (),
              include_seen: bool = False, timeout_s: float = 2.0) -> Any:
    stub = pb2_grpc.RecommenderStub(channel)
    request = pb2.RecommendRequest(session_id=session_id, k=k, exclude_item_ids=exclude, include_seen=include_seen)
    try:
        return stub.Recommend(request, timeout=timeout_s)
    except grpc.RpcError as exc:
        raise ConfigError(f"Recommend failed: {exc.code().name}: {exc.details()}") from None  # type: ignore[attr-defined]


def dataset_of(registry: Path) -> str | None:
    """The dataset the registry's CURRENT ranker was trained on (read from its manifest), if any."""
    from streamrec.registry import RANKER, current_manifest

    dataset = (current_manifest(registry, RANKER) or {}).get("dataset")
    return str(dataset) if dataset else None


def titles_of(dataset: str, data_dir: Path) -> dict[str, str]:
    from streamrec.data.datasets import load

    items = load(dataset, data_dir).items
    return dict(zip(items["item_id"].astype(str), items["title"].fillna("").astype(str), strict=True))


def format_response(session_id: str, response: Any, titles: Mapping[str, str]) -> str:
    flags = [f for f, on in (("degraded", response.degraded), ("cold start", response.cold_start)) if on]
    versions = ", ".join(f"{m} {v}" for m, v in sorted(response.model_versions.items())) or "no model"
    lines = [f"session {session_id}: {len(response.items)} recommendation(s) from {versions}"
             + (f" [{', '.join(flags)}]" if flags else "")]
    for rank, item in enumerate(response.items, 1):
        title = titles.get(item.item_id, "(no title)")
        lines.append(f"{rank:3}. {item.item_id:>8}  {title[:60]:60} {item.score:8.3f}  {'+'.join(item.sources)}")
    return "\n".join(lines)
