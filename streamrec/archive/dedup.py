"""Which event ids the archive already holds, per date, within a memory bound.

De-duplication is exact within a UTC date: an event is dropped when an event with the same id
is archived under the same date. That covers both sources of duplicates, because a copy always
carries the original's timestamp and so lands in the original's date folder:

* redelivery: records written to a published file before a crash, whose offsets were never
  committed, come again after the restart;
* resends: the publisher may send an event again (a retried replay, a client that retries).

The disk is the truth. A date's ids are read from its files the first time the date is
touched, then kept in memory and extended as files are published. Only the most recently used
dates are kept, at most ``max_ids`` ids in all; a date that was let go is read again when it is
next touched, so the bound costs time, never correctness.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from datetime import date

from streamrec.errors import ConfigError

__all__ = ["SeenIds"]


class SeenIds:
    """Event ids per date, loaded on demand by ``load(day)`` and evicted least recently used first."""

    def __init__(self, load: Callable[[date], Iterable[str]], max_ids: int) -> None:
        if max_ids < 1:
            raise ConfigError(f"max_ids must be >= 1, got {max_ids}")
        self._load, self.max_ids = load, max_ids
        self._days: OrderedDict[date, set[str]] = OrderedDict()
        self._size = 0
        self.loads = 0  # how many times a date was read from disk: tests and logs watch it

    def ids(self, day: date) -> set[str]:
        """The ids archived under ``day`` (read-only to callers: use ``add`` after publishing)."""
        ids = self._days.get(day)
        if ids is None:
            ids = set(self._load(day))
            self.loads += 1
            self._days[day] = ids
            self._size += len(ids)
            self._evict(keep=day)
        else:
            self._days.move_to_end(day)
        return ids

    def fresh(self, day: date, event_ids: Iterable[str]) -> list[int]:
        """Positions in ``event_ids`` of the first copy of each id not yet archived under ``day``."""
        archived = self.ids(day)
        seen: set[str] = set()
        keep = []
        for i, event_id in enumerate(event_ids):
            if event_id not in archived and event_id not in seen:
                seen.add(event_id)
                keep.append(i)
        return keep

    def add(self, day: date, event_ids: Iterable[str]) -> None:
        """Record ids that were just published under ``day``."""
        ids = self.ids(day)
        before = len(ids)
        ids.update(event_ids)
        self._size += len(ids) - before
        self._evict(keep=day)

    def __len__(self) -> int:
        return self._size

    def _evict(self, keep: date) -> None:
        while self._size > self.max_ids and len(self._days) > 1:
            day = next(iter(self._days))
            if day == keep:
                self._days.move_to_end(day)
                continue
            self._size -= len(self._days.pop(day))
