from __future__ import annotations

import threading

import numpy as np

from streamrec.serve.state import ServingState, StateHolder


def state(version: str) -> ServingState:
    return ServingState(pipeline=None, vocab=("<pad>", "a", "b", "c"), versions={"deepfm": version},  # type: ignore[arg-type]
                        dataset="test", popular=np.array([2, 1, 3]))


def test_ids_map_to_indices_and_unknown_ids_are_skipped() -> None:
    s = state("v1")
    assert s.indices(["c", "zzz", "a", "<pad>"]) == [3, 1]
    assert s.ranker_version == "v1"


def test_state_is_immutable() -> None:
    s = state("v1")
    try:
        s.versions["deepfm"] = "v2"  # type: ignore[index]
    except TypeError:
        pass
    else:
        raise AssertionError("versions must be read-only")
    assert s.versions["deepfm"] == "v1"


def test_swap_replaces_the_reference_and_a_reader_keeps_what_it_took() -> None:
    holder = StateHolder()
    assert holder.state is None
    assert holder.swap(state("v1")) is None
    taken = holder.state  # a request in flight holds this
    old = holder.swap(state("v2"))
    assert old is taken and taken is not None and taken.ranker_version == "v1"
    assert holder.state is not None and holder.state.ranker_version == "v2"


def test_concurrent_readers_only_ever_see_whole_states() -> None:
    holder = StateHolder(state("v0"))
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            s = holder.state
            assert s is not None
            seen.add(s.versions["deepfm"])

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    for i in range(1, 200):
        holder.swap(state(f"v{i}"))
    stop.set()
    for t in readers:
        t.join()
    assert seen <= {f"v{i}" for i in range(200)}
    assert holder.state is not None and holder.state.ranker_version == "v199"
