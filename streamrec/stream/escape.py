"""Text from events, made safe for an operator's terminal and for log files.

Ids, keys and field names come from whoever can publish to the clicks topic. Printed raw, an
``ESC [`` sequence recolours or clears a terminal, a carriage return overwrites the line before it,
a newline forges a log line and U+202E reverses what follows. ``escape_text`` writes every character
that is not printable as Python's ``repr`` would (``\\x1b``, ``\\n``, ``\\u202e``) and doubles
backslashes, so what is shown is unambiguous and reads back to the original.
"""

from __future__ import annotations

from typing import Final

__all__ = ["escape_text"]

_NAMED: Final = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_text(text: str, limit: int | None = None, keep: str = "") -> str:
    """``text`` with control, format and other non-printable characters escaped; at most ``limit``
    characters of it (before escaping), followed by ``…`` when cut. Characters in ``keep`` stay as
    they are (a traceback keeps its newlines)."""
    cut = limit is not None and len(text) > limit
    if cut:
        text = text[:limit]
    if text.isprintable() and "\\" not in text:
        return text + "…" if cut else text  # the common case: nothing to escape
    out = []
    for ch in text:
        if ch in keep:
            out.append(ch)
        elif ch in _NAMED:
            out.append(_NAMED[ch])
        elif ch.isprintable():
            out.append(ch)
        else:
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
    return "".join(out) + ("…" if cut else "")
