"""Request validation: every rule a request must pass before any work is done.

Failures raise ``InvalidRequest``, which the servicer turns into ``INVALID_ARGUMENT`` with the
message as details. proto3 keeps the fields it does not know in a message's unknown-field set
when parsing (it does not drop them), so a field the schema lacks is detected there
(``google.protobuf.unknown_fields.UnknownFieldSet``) and refused rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from google.protobuf.message import Message
from google.protobuf.unknown_fields import UnknownFieldSet

from streamrec.errors import InvalidEvent, InvalidRequest
from streamrec.events.ids import MAX_ID_BYTES, check_id

__all__ = ["Limits", "validate_k", "validate_id", "validate_ids", "validate_known_fields"]


@dataclass(frozen=True)
class Limits:
    max_id_len: int = MAX_ID_BYTES  # bytes of UTF-8
    max_k: int = 1000
    max_items: int = 1000  # ids in a sequence or an exclude list


def validate_known_fields(request: Message) -> None:
    unknown = UnknownFieldSet(request)
    if len(unknown):
        numbers = sorted({f.field_number for f in unknown})
        raise InvalidRequest(f"{request.DESCRIPTOR.full_name} has unknown field number(s) "
                             f"{', '.join(map(str, numbers))}: this server does not know them; check the client "
                             "against protos/streamrec/v1/recommender.proto")


def validate_k(k: int, limits: Limits) -> None:
    if not 1 <= k <= limits.max_k:
        raise InvalidRequest(f"k must be between 1 and {limits.max_k}, got {k}" + (" (k is required)" if k == 0 else ""))


def validate_id(value: str, what: str, limits: Limits, *, session: bool = False) -> str:
    """The id in NFC, by the worker's own rule (``streamrec.events.ids``), so that every id the worker
    stores can be asked for; ``InvalidRequest`` otherwise."""
    if not value:
        raise InvalidRequest(f"{what} is required and must not be empty")
    try:
        return check_id(value, what, max_bytes=limits.max_id_len, session=session)
    except InvalidEvent as exc:
        raise InvalidRequest(exc.detail) from None


def validate_ids(values: Iterable[str], what: str, limits: Limits) -> list[str]:
    values = list(values)
    if len(values) > limits.max_items:
        raise InvalidRequest(f"{what} has {len(values)} ids; at most {limits.max_items} are allowed")
    return [validate_id(value, f"{what}[{i}]", limits) for i, value in enumerate(values)]
