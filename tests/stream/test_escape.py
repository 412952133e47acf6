"""``escape_text``: what reaches an operator's terminal or a log file from an event is inert."""

from __future__ import annotations

import ast

from hypothesis import given
from hypothesis import strategies as st

from streamrec.stream.escape import escape_text
from streamrec.stream.inspect import format_dead_letter, format_session
from streamrec.stream.session_store import SessionEvent


def test_control_and_format_characters_are_written_as_escapes() -> None:
    assert escape_text("Fargo (1996) é 東京") == "Fargo (1996) é 東京"  # printable text is left alone
    assert escape_text("a\x1b[31mred\x07") == "a\\x1b[31mred\\x07"
    assert escape_text("line\r\nforged\tlog") == "line\\r\\nforged\\tlog"
    assert escape_text("abc\u202egnp.exe") == "abc\\u202egnp.exe"  # right-to-left override
    assert escape_text("\U000e0001tag") == "\\U000e0001tag"
    assert escape_text("back\\slash") == "back\\\\slash"  # so that an escape in the text reads as text


def test_a_limit_cuts_before_escaping_and_says_so() -> None:
    assert escape_text("abcdef", 3) == "abc…"
    assert escape_text("\x1b\x1b\x1b\x1b", 2) == "\\x1b\\x1b…"
    assert escape_text("abc", 3) == "abc"


def test_kept_characters_stay() -> None:
    assert escape_text("Traceback\n  \x1b[2J", keep="\n") == "Traceback\n  \\x1b[2J"


@given(st.text())
def test_the_escaped_text_is_printable_and_reads_back_to_the_original(text: str) -> None:
    escaped = escape_text(text)
    assert escaped.isprintable()
    assert ast.literal_eval('"' + escaped.replace('"', '\\"') + '"') == text


def test_dlq_and_sessions_output_escape_what_came_from_events() -> None:
    letter = {"reason": "unknown_field", "detail": "unknown field(s): \x1b]0;owned\x07", "key": "s\x1b[2J",
              "source": {"topic": "t", "partition": 1, "offset": 42}, "truncated": True}
    line = format_dead_letter(letter)
    assert "\x1b" not in line and "\x07" not in line
    assert "unknown field(s): \\x1b]0;owned\\x07" in line and "key=s\\x1b[2J" in line
    assert line.endswith("@1:42 (payload cut)")
    assert "key=(none)" in format_dead_letter({**letter, "key": None, "truncated": False})
    shown = format_session("s\u202e1", [SessionEvent("item\x1b[5m", "view", 1_700_000_000_000)])
    assert "\x1b" not in shown and "\u202e" not in shown and "s\\u202e1" in shown
