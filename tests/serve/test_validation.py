from __future__ import annotations

import pytest

from streamrec.errors import InvalidRequest
from streamrec.serve.servicer import pb2
from streamrec.serve.validation import Limits, validate_id, validate_ids, validate_k, validate_known_fields

LIMITS = Limits(max_id_len=8, max_k=1000, max_items=3)


@pytest.mark.parametrize("k", [1, 10, 1000])
def test_k_in_range_passes(k: int) -> None:
    validate_k(k, LIMITS)


@pytest.mark.parametrize(("k", "needle"), [(0, "k is required"), (-1, "got -1"), (1001, "between 1 and 1000")])
def test_k_out_of_range_is_refused_with_the_range(k: int, needle: str) -> None:
    with pytest.raises(InvalidRequest, match=needle):
        validate_k(k, LIMITS)


def test_ids_must_be_present_and_short() -> None:
    validate_id("abc", "session_id", LIMITS)
    with pytest.raises(InvalidRequest, match="session_id is required"):
        validate_id("", "session_id", LIMITS)
    with pytest.raises(InvalidRequest, match="session_id is 9 bytes long; at most 8"):
        validate_id("x" * 9, "session_id", LIMITS)
    with pytest.raises(InvalidRequest, match="10 bytes"):  # bytes, not characters
        validate_id("é" * 5, "session_id", LIMITS)


def test_ids_follow_the_workers_rule_nfc_and_no_braces_in_session_ids() -> None:
    assert validate_id("Cafe\u0301", "item_id", LIMITS) == "Caf\u00e9"
    assert validate_ids(["a", "Cafe\u0301"], "item_ids", LIMITS) == ["a", "Caf\u00e9"]
    assert validate_id("}x", "item_id", LIMITS) == "}x"
    with pytest.raises(InvalidRequest, match="hash tag"):
        validate_id("}x", "session_id", LIMITS, session=True)
    with pytest.raises(InvalidRequest, match="control or non-printable"):
        validate_id("a\x1b[2J", "session_id", LIMITS, session=True)


def test_id_lists_are_bounded_and_each_id_checked() -> None:
    validate_ids(["a", "b", "c"], "item_ids", LIMITS)
    validate_ids([], "item_ids", LIMITS)
    with pytest.raises(InvalidRequest, match="item_ids has 4 ids; at most 3"):
        validate_ids(["a", "b", "c", "d"], "item_ids", LIMITS)
    with pytest.raises(InvalidRequest, match=r"item_ids\[1\] is required"):
        validate_ids(["a", ""], "item_ids", LIMITS)


def test_unknown_fields_survive_parsing_and_are_refused() -> None:
    known = pb2.RecommendRequest(session_id="s", k=3).SerializeToString()
    validate_known_fields(pb2.RecommendRequest.FromString(known))
    extra = known + bytes([(9 << 3) | 0, 1]) + bytes([(12 << 3) | 2, 1]) + b"x"  # field 9 varint, field 12 bytes
    request = pb2.RecommendRequest.FromString(extra)
    assert request.session_id == "s" and request.k == 3
    with pytest.raises(InvalidRequest, match=r"streamrec.v1.RecommendRequest has unknown field number\(s\) 9, 12"):
        validate_known_fields(request)
