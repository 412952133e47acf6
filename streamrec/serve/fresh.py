"""Items new since the last retrain, recommendable at once from the worker's live counts.

The models know only the items of their training snapshot. An item first seen in the stream has
no embedding until the next retrain, but the worker counts, for every item, which items followed
it in sessions (``cooc:{item}`` in Redis) and how popular each item is lately. So the server:

- takes the items the models do not know (*fresh* items) among the worker's most popular lately;
- reads how often each co-occurred with the session's last few items, and keeps those that did
  often enough;
- mixes them into the model's list: at most ``max_share`` of ``k``, never in the first
  ``first_slot`` places (the model's best stays on top), spread evenly below it;
- for a session with no known item at all, answers from co-occurrence first and then recent
  popularity, both of which include fresh items.

The scores a fresh item gets are placed between its neighbours' so the list stays sorted; its
source says ``cooc``. This is a heuristic with known limits (it needs the item to co-occur, and it
cannot rank fresh items against each other by relevance beyond their counts), and it ends at the
next retrain, when the models learn the items.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

__all__ = ["FreshConfig", "Scored", "blend", "fresh_candidates", "neighbour_totals"]

Scored = tuple[str, float, tuple[str, ...]]  # item id, score, sources


@dataclass(frozen=True)
class FreshConfig:
    window: int = 3  # how many of the session's latest items lend their neighbours
    neighbours: int = 20  # neighbours read per item, for a session with no known item
    candidates: int = 50  # fresh items considered: the most popular lately that the models do not know
    min_count: float = 2.0  # co-occurrences an item needs to be proposed
    max_share: float = 0.2  # of k, at most (at least one slot when there is a candidate)
    first_slot: int = 1  # 0-based: the first place a fresh item may take


def neighbour_totals(neighbours: Sequence[Sequence[tuple[str, float]]], banned: Collection[str]) -> list[tuple[str, float]]:
    """Items by their total co-occurrence with the session's items, best first (ties by id)."""
    totals: dict[str, float] = {}
    for row in neighbours:
        for item, count in row:
            if item not in banned:
                totals[item] = totals.get(item, 0.0) + float(count)
    return sorted(totals.items(), key=lambda ic: (-ic[1], ic[0]))


def fresh_candidates(neighbours: Sequence[Sequence[tuple[str, float]]], known: Mapping[str, int] | Collection[str],
                     banned: Collection[str], config: FreshConfig = FreshConfig()) -> list[tuple[str, float]]:
    """Fresh items by total co-occurrence with the session's items, best first. ``neighbours``: per
    session item, its (item id, count) pairs; ``known``: the models' items; ``banned``: seen or excluded."""
    return [(i, c) for i, c in neighbour_totals(neighbours, banned) if i not in known and c >= config.min_count]


def blend(ranked: Sequence[Scored], fresh: Sequence[tuple[str, float]], k: int,
          config: FreshConfig = FreshConfig()) -> list[Scored]:
    """``ranked`` (the models' answer, best first) with up to ``max_share * k`` fresh items spread into it;
    fresh items also fill the list when the models have too few."""
    n_fresh = min(len(fresh), max(1, int(config.max_share * k))) if fresh else 0
    start = min(config.first_slot, len(ranked))
    step = max(1, -(-(k - start) // max(n_fresh, 1)))  # ceil: spread over the whole list
    slots = {start + j * step for j in range(n_fresh)}
    order: list[tuple[bool, int]] = []  # (is fresh, index into its list)
    m = f = 0
    for position in range(k):
        if (position in slots and f < n_fresh) or (m >= len(ranked) and f < len(fresh)):
            order.append((True, f))
            f += 1
        elif m < len(ranked):
            order.append((False, m))
            m += 1
    model_scores = [ranked[i][1] if not is_fresh else None for is_fresh, i in order]
    out: list[Scored] = []
    for pos, (is_fresh, i) in enumerate(order):
        if not is_fresh:
            out.append(ranked[i])
            continue
        above = next((s for s in reversed(model_scores[:pos]) if s is not None), None)
        below = next((s for s in model_scores[pos + 1:] if s is not None), None)
        if above is not None and below is not None:
            score = (above + below) / 2
        else:
            score = below + 1.0 if below is not None else (above if above is not None else 0.0) - 1.0
        if out and score >= out[-1][1]:  # consecutive fresh items, or ties: keep the order strict
            score = out[-1][1] - 1e-6
        out.append((fresh[i][0], float(score), ("cooc",)))
    return out
