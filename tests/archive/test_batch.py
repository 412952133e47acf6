from __future__ import annotations

import pytest

from streamrec.archive.batch import FlushPolicy, PendingBatch
from streamrec.errors import ConfigError
from streamrec.events.schema import encode_event
from tests.archive.helpers import event


def test_offsets_to_commit_cover_every_record_malformed_ones_included() -> None:
    batch = PendingBatch()
    assert batch.add(0, 5, encode_event(event(0)), now=1.0) == event(0)
    assert batch.add(0, 6, b"{not json", now=1.5) is None
    assert batch.add(3, 40, None, now=2.0) is None
    assert batch.add(3, 41, encode_event(event(1)), now=2.0) == event(1)
    assert batch.next_offsets == {0: 7, 3: 42}
    assert dict(batch.malformed) == {"not_json": 1, "tombstone": 1}
    assert list(batch.by_partition()) == [(0, [(5, event(0))]), (3, [(41, event(1))])]
    assert (batch.records, batch.started_at) == (4, 1.0)
    batch.reset()
    assert not batch and batch.next_offsets == {} and batch.started_at is None


def test_flush_on_size_or_on_age() -> None:
    policy = FlushPolicy(max_records=3, max_age_s=10.0)
    batch = PendingBatch()
    assert not policy.due(batch, now=1000.0)  # nothing to flush, however long ago
    batch.add(0, 0, encode_event(event(0)), now=100.0)
    batch.add(0, 1, encode_event(event(1)), now=101.0)
    assert not policy.due(batch, now=109.9)
    assert policy.due(batch, now=110.0)
    batch.add(0, 2, b"", now=102.0)
    assert policy.due(batch, now=102.0)


def test_a_flush_policy_needs_positive_limits() -> None:
    with pytest.raises(ConfigError):
        FlushPolicy(max_records=0)
    with pytest.raises(ConfigError):
        FlushPolicy(max_age_s=0.0)
