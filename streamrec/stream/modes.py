"""The worker's dry runs: each times one layer of ingest (``streamrec worker --dry-run``, ``bench ingest --layers``).

- ``count``: Faust alone: take, ack and count each batch, nothing else.
- ``parse``: Faust plus our validation and batch plan, without Redis.
- ``aiokafka``: a bare aiokafka consumer that only counts, without Faust (``streamrec.stream.bare``).

A module of its own so that the command line can name them without importing Faust.
"""

from __future__ import annotations

from typing import Final, Literal

__all__ = ["DRY_RUNS", "DryRun", "FaustDryRun"]

FaustDryRun = Literal["count", "parse"]
DryRun = Literal["count", "parse", "aiokafka"]
DRY_RUNS: Final = ("count", "parse", "aiokafka")
