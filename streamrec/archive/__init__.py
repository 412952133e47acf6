"""The event archive: the clicks topic as a Parquet dataset partitioned by event date.

``streamrec archive`` runs ``consumer.run_archiver``; the trainer reads ``reader.read_archive``;
``seed`` fills an archive from MovieLens without Kafka. ``layout`` says what is where on disk,
``writer`` how files become durable, ``dedup`` why no event is archived twice.
"""

from streamrec.archive.batch import FlushPolicy, PendingBatch
from streamrec.archive.consumer import ArchiveConfig, ArchiveReport, run_archiver
from streamrec.archive.dedup import SeenIds
from streamrec.archive.layout import PartName, date_of
from streamrec.archive.reader import ArchiveStats, archive_stats, read_archive
from streamrec.archive.seed import SeedReport, seed_archive, seed_from_dataset
from streamrec.archive.writer import ArchiveWriter, WriteResult

__all__ = [
    "ArchiveConfig", "ArchiveReport", "ArchiveStats", "ArchiveWriter", "FlushPolicy", "PartName", "PendingBatch",
    "SeedReport", "SeenIds", "WriteResult", "archive_stats", "date_of", "read_archive", "run_archiver",
    "seed_archive", "seed_from_dataset",
]
