from __future__ import annotations

from pathlib import Path

import orjson

from streamrec.archive.reader import read_archive
from streamrec.archive.seed import seed_archive, seed_from_dataset
from streamrec.archive.writer import ArchiveWriter
from streamrec.events.schema import encode_event
from streamrec.publish.sources import dataset_events
from streamrec.settings import Settings
from tests.archive.helpers import DAY_MS, T0, event, raw_event_ids


def test_a_seed_holds_the_events_the_publisher_would_send_and_seeding_twice_adds_nothing(
        tmp_path: Path, base_settings: Settings) -> None:
    published = [orjson.loads(p) for _, p in dataset_events("ml-100k", base_settings.data_dir, 3000)]
    with ArchiveWriter(tmp_path) as writer:
        first = seed_from_dataset("ml-100k", base_settings.data_dir, writer, limit=3000)
        again = seed_from_dataset("ml-100k", base_settings.data_dir, writer, limit=3000)
    assert (first.events, first.result.written, first.invalid) == (3000, 3000, [])
    assert (again.result.written, again.result.duplicates) == (0, 3000)
    frame = read_archive(tmp_path)
    by_id = {e["event_id"]: e for e in published}
    assert len(frame) == len(raw_event_ids(tmp_path)) == 3000
    for row in frame.sample(50, random_state=0).to_dict("records"):
        assert row == by_id[row["event_id"]]


def test_seed_chunks_end_at_date_boundaries_and_invalid_payloads_are_reported(tmp_path: Path) -> None:
    payloads = [(i, encode_event(event(i, ts=T0 + (i // 4) * DAY_MS))) for i in range(12)] + [(12, b"{}")]
    with ArchiveWriter(tmp_path) as writer:
        report = seed_archive(payloads, writer, chunk=3)
    assert [p.name for p in report.result.files] == ["part-seed-0-3.parquet", "part-seed-4-7.parquet",
                                                      "part-seed-8-11.parquet"]
    assert report.invalid[0][0] == 12 and "missing_field" in report.invalid[0][1]
