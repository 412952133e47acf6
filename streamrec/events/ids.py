"""The one rule for ids (event, session, user and item ids), shared by the worker's event parser and
the server's request validation, so that an id the worker stores is an id the server accepts.

- **NFC.** An id is normalised to Unicode NFC first: "é" typed as one code point or as "e" plus a
  combining accent is one id, in Redis, in the models' vocabulary and in requests alike.
- **Length in UTF-8 bytes**, at most ``MAX_ID_BYTES``: bytes are what Kafka keys and Redis keys
  cost, and counting code points let a 100-character CJK id (300 bytes) through the worker while
  the server refused it.
- **Printable**, and not only white space: ids reach logs, terminals and Redis key names.
- **Session ids contain no ``{`` or ``}``.** A session's keys share the Redis Cluster hash tag
  ``{<session_id>}``; a brace inside the id would end the tag early (``}x`` gives an empty tag,
  whose two keys land in different slots, and ``hot}1``, ``hot}2`` would all share one slot).
"""

from __future__ import annotations

import unicodedata
from typing import Any, Final

from streamrec.errors import InvalidEvent

__all__ = ["HASH_TAG_CHARS", "MAX_ID_BYTES", "check_id", "key_names"]

MAX_ID_BYTES: Final = 128
HASH_TAG_CHARS: Final = frozenset("{}")


def check_id(value: Any, what: str, *, max_bytes: int = MAX_ID_BYTES, session: bool = False) -> str:
    """``value`` in NFC when it is a valid id; otherwise ``InvalidEvent`` with a stable reason
    (``wrong_type``, ``empty_id``, ``id_too_long`` or ``bad_id``). ``session``: also refuse braces."""
    if not isinstance(value, str):
        raise InvalidEvent("wrong_type", f"{what} must be a string, got {'null' if value is None else type(value).__name__}")
    value = unicodedata.normalize("NFC", value)
    if not value or value.isspace():
        raise InvalidEvent("empty_id", f"{what} is empty")
    size = len(value.encode("utf-8", "surrogatepass"))
    if size > max_bytes:
        raise InvalidEvent("id_too_long", f"{what} is {size} bytes long; at most {max_bytes} are allowed")
    if not value.isprintable():
        raise InvalidEvent("bad_id", f"{what} contains control or non-printable characters")
    if session and not HASH_TAG_CHARS.isdisjoint(value):
        raise InvalidEvent("bad_id", f"{what} contains '{{' or '}}', which would break its Redis Cluster hash tag")
    return value


def key_names(key: bytes, session_id: str) -> bool:
    """Whether a Kafka record's key is ``session_id`` (already checked, so in NFC) under the same rule:
    its UTF-8 text in NFC. A producer that keys by the id as it sends it is never refused for the
    normalisation the worker applies."""
    if key == session_id.encode():
        return True
    try:
        return unicodedata.normalize("NFC", key.decode("utf-8")) == session_id
    except UnicodeDecodeError:
        return False
