"""Where events to publish come from. Each source yields ``(line_no, payload bytes)``."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import BinaryIO

from streamrec.events.schema import encode_event

__all__ = ["dataset_events", "jsonl_lines"]


def jsonl_lines(path: str | Path, limit: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines of a JSONL file, or of stdin for ``-``."""
    stream: BinaryIO = sys.stdin.buffer if str(path) == "-" else open(path, "rb")
    try:
        numbered = ((n, line.rstrip(b"\r\n")) for n, line in enumerate(stream, 1))
        yield from islice(((n, line) for n, line in numbered if line.strip()), limit)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def dataset_events(dataset: str, data_dir: Path, limit: int | None = None,
                   session_gap_s: int = 3600) -> Iterator[tuple[int, bytes]]:
    """A MovieLens replay as wire events, in timestamp order."""
    from streamrec.data.datasets import load
    from streamrec.data.replay import ReplayConfig, replay_events

    data = load(dataset, data_dir)
    events = replay_events(data.interactions, ReplayConfig(session_gap_s=session_gap_s), limit=limit, dataset=dataset)
    for n, event in enumerate(events, 1):
        yield n, encode_event(event)
