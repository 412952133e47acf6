from pathlib import Path

import pandas as pd
import pytest

from streamrec.data.datasets import load
from streamrec.data.names import is_snapshot
from streamrec.data.snapshots import events_to_dataset, write_snapshot
from streamrec.errors import DataError


def events() -> pd.DataFrame:
    return pd.DataFrame({"event_id": ["e1", "e2", "e3", "e4"], "session_id": ["s1", "s1", "s2", "s2"],
                         "user_id": ["u1", "u1", None, None], "item_id": ["b", "a", "a", "new"],
                         "timestamp": [2_000, 1_000, 3_000, 4_000]})


def test_events_become_a_dataset_numbered_by_first_click_with_catalogue_metadata() -> None:
    catalog = pd.DataFrame({"item_id": ["a", "b"], "title": ["Alpha", "Beta"], "genres": ["Drama", "Comedy|Drama"]})
    data = events_to_dataset(events(), catalog)
    assert data.vocab[1:] == ["a", "b", "new"]  # ordered by first click in time
    assert data.interactions["user_id"].tolist() == ["u1", "u1", "s2", "s2"]  # no user: the session stands in
    assert data.interactions["timestamp"].tolist() == [1, 2, 3, 4]  # seconds
    items = data.items.set_index("item_id")
    assert items.loc["a", "title"] == "Alpha" and items.loc["b", "genres"] == "Comedy|Drama"
    assert items.loc["new", "title"] == "new" and items.loc["new", "genres"] == ""


def test_a_snapshot_round_trips_through_load_and_is_named_by_its_content(tmp_path: Path) -> None:
    data = events_to_dataset(events())
    name = write_snapshot(data, tmp_path, {"test_days": 1.0})
    assert is_snapshot(name) and write_snapshot(events_to_dataset(events()), tmp_path, {"test_days": 1.0}) == name
    back = load(name, tmp_path)
    assert back.vocab == data.vocab
    pd.testing.assert_frame_equal(back.interactions, data.interactions)


def test_no_events_and_unknown_snapshots_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="archive some clicks"):
        events_to_dataset(events().iloc[:0])
    with pytest.raises(DataError, match="STREAMREC_DATA_DIR"):
        load("snapshot-0000", tmp_path)
