"""The servicer's answers that need no model run: the popularity back-fill (``top_up``) and the
cold, degraded and no-model paths, through ``Recommend`` with a session source and a pipeline of
this file's own (seams, no Redis, no gRPC server)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest

from streamrec.errors import Overloaded, RedisUnavailable
from streamrec.rank.pipeline import Query, Recommendation
from streamrec.rank.rerank import RerankConfig
from streamrec.serve.metrics import ServeMetrics
from streamrec.serve.servicer import RecommenderServicer, pb2, top_up
from streamrec.serve.state import ServingState, StateHolder
from streamrec.stream.session_store import SessionTail

VOCAB = ("", "a", "b", "c", "d", "e")  # training popularity: a, b, c, d, e


def test_top_up_adds_the_best_ranked_ids_not_banned_nor_present_up_to_k() -> None:
    items = [("x", 5.0, ("mf",))]
    out = top_up(items, ["a", "x", "b", "c", "d"], {"b"}, 4, "pop", lambda n: -1.0 - n)
    assert out == [("x", 5.0, ("mf",)), ("a", -1.0, ("pop",)), ("c", -2.0, ("pop",)), ("d", -3.0, ("pop",))]
    assert top_up(items, ["a"], set(), 1, "pop", float) == items, "already k long: unchanged"
    assert top_up([], ["a", "b"], {"a", "b"}, 3, "pop", float) == [], "nothing left to add"


def test_top_up_reads_only_as_much_of_the_ranking_as_it_needs() -> None:
    def ranking() -> Iterator[str]:
        yield from ("a", "b")
        raise AssertionError("read past what was needed")

    assert [i for i, _, _ in top_up([("z", 1.0, ())], ranking(), set(), 3, "pop", float)] == ["z", "a", "b"]
    assert top_up([], itertools.repeat("a"), set(), 0, "pop", float) == []


class Sessions:
    """What ``SessionSource`` answers, or ``RedisUnavailable`` for everything when ``down``."""

    def __init__(self, items: Sequence[str] = (), recent: Sequence[str] = (),
                 cooc: dict[str, list[tuple[str, float]]] | None = None, down: bool = False) -> None:
        self.tail = SessionTail(list(items), [1_700_000_000_000 + i for i in range(len(items))])
        self.recent, self.cooc, self.down = list(recent), cooc or {}, down

    def _check(self) -> None:
        if self.down:
            raise RedisUnavailable("Redis read failed: ConnectionError")

    async def session(self, session_id: str, timeout_s: float | None = None) -> SessionTail:
        self._check()
        return self.tail

    async def recent_popular(self, timeout_s: float | None = None) -> list[str]:
        self._check()
        return self.recent

    async def cooccurring(self, item_ids: Sequence[str], n: int,
                          timeout_s: float | None = None) -> list[list[tuple[str, float]]]:
        self._check()
        return [self.cooc.get(i, [])[:n] for i in item_ids]

    async def cooc_counts(self, candidates: Sequence[str], item_ids: Sequence[str],
                          timeout_s: float | None = None) -> list[list[float]]:
        self._check()
        return [[0.0] * len(item_ids) for _ in candidates]


class Pipeline:
    """Answers every query with ``recs``."""

    rerank = RerankConfig()

    def __init__(self, recs: Sequence[Recommendation]) -> None:
        self.recs = list(recs)
        self.queries: list[Query] = []

    def recommend_many(self, queries: Sequence[Query]) -> list[list[Recommendation]]:
        self.queries += queries
        return [self.recs for _ in queries]


class Context:
    def time_remaining(self) -> float:
        return 5.0

    async def abort(self, code: Any, details: str) -> None:
        raise AssertionError(f"aborted: {code} {details}")


def recommend(sessions: Sessions, state: ServingState | None, k: int, exclude: Sequence[str] = ()) -> Any:
    servicer = RecommenderServicer(StateHolder(state), sessions, ServeMetrics())  # type: ignore[arg-type]
    request = pb2.RecommendRequest(session_id="s1", k=k, exclude_item_ids=list(exclude))
    return asyncio.run(servicer.Recommend(request, Context()))  # type: ignore[arg-type]


def state_with(recs: Sequence[Recommendation] = ()) -> ServingState:
    return ServingState(Pipeline(recs), VOCAB, {"deepfm": "v1"}, "test",  # type: ignore[arg-type]
                        np.arange(1, len(VOCAB), dtype=np.int64))


def answer(reply: Any) -> list[tuple[str, float, tuple[str, ...]]]:
    return [(i.item_id, pytest.approx(i.score), tuple(i.sources)) for i in reply.items]


def test_a_short_model_answer_is_filled_with_popular_items_below_its_last_score() -> None:
    state = state_with([Recommendation(3, 0.5, ("mf",))])
    reply = recommend(Sessions(items=["a"]), state, k=4, exclude=["b"])
    assert not reply.cold_start and not reply.degraded
    # a is seen, b excluded, c already there: d and e fill, one point apart, below c
    assert answer(reply) == [("c", 0.5, ("mf",)), ("d", -0.5, ("pop",)), ("e", -1.5, ("pop",))]


def test_a_session_of_new_items_gets_co_occurrence_then_recent_then_training_popularity() -> None:
    sessions = Sessions(items=["new1"], recent=["new1", "c", "new3", "b"],
                        cooc={"new1": [("b", 2.0), ("new2", 1.0), ("d", 0.5)]})
    reply = recommend(sessions, state_with(), k=6, exclude=["d"])
    assert reply.cold_start and not reply.degraded
    assert answer(reply) == [("b", 3.0, ("cooc",)), ("new2", 2.0, ("cooc",)), ("c", 1.0, ("recent_pop",)),
                             ("new3", 0.5, ("recent_pop",)), ("a", -1.0, ("pop",)), ("e", -2.0, ("pop",))]


def test_redis_down_gives_a_degraded_answer_from_training_popularity() -> None:
    reply = recommend(Sessions(down=True), state_with(), k=3, exclude=["a"])
    assert reply.degraded and not reply.cold_start
    assert answer(reply) == [("b", -1.0, ("pop",)), ("c", -2.0, ("pop",)), ("d", -3.0, ("pop",))]


def test_a_model_answer_goes_out_without_fresh_items_when_their_read_is_refused_as_busy() -> None:
    class Busy(Sessions):
        async def recent_popular(self, timeout_s: float | None = None) -> list[str]:
            raise Overloaded("busy", "the server is overloaded: its event loop was busy for 90% of the 100 ms")

    state = state_with([Recommendation(3, 0.5, ("mf",))])
    reply = recommend(Busy(items=["a"]), state, k=1)  # the answer is paid for: it is not refused
    assert not reply.degraded and answer(reply) == [("c", 0.5, ("mf",))]


def test_no_model_yet_answers_from_recent_popularity_alone() -> None:
    reply = recommend(Sessions(items=["a"], recent=["x", "y", "z"]), None, k=2, exclude=["x"])
    assert reply.degraded and reply.cold_start and dict(reply.model_versions) == {}
    assert answer(reply) == [("y", 1.0, ("recent_pop",)), ("z", 0.5, ("recent_pop",))]


def test_a_call_past_its_deadline_is_left_to_grpc_core_and_counted() -> None:
    class Late(Context):
        def time_remaining(self) -> float:
            return 0.0

    metrics = ServeMetrics()
    servicer = RecommenderServicer(StateHolder(state_with()), Sessions(items=["a"]), metrics)  # type: ignore[arg-type]
    request = pb2.RecommendRequest(session_id="s1", k=3)
    with pytest.raises(asyncio.CancelledError):  # Late.abort would fail the test
        asyncio.run(servicer.Recommend(request, Late()))  # type: ignore[arg-type]
    assert metrics.registry.get_sample_value("streamrec_rpc_responses_total",
                                             {"rpc": "Recommend", "code": "DEADLINE_EXCEEDED"}) == 1


def test_the_bench_switch_skips_the_pipeline_and_says_so_with_cold_start() -> None:
    state = state_with([Recommendation(3, 0.5, ("mf",))])
    servicer = RecommenderServicer(StateHolder(state), Sessions(items=["a"]), ServeMetrics(),  # type: ignore[arg-type]
                                   skip_pipeline=True)
    reply = asyncio.run(servicer.Recommend(pb2.RecommendRequest(session_id="s1", k=2), Context()))  # type: ignore[arg-type]
    assert reply.cold_start and not reply.degraded and state.pipeline.queries == []  # type: ignore[attr-defined]
    assert answer(reply) == [("b", -1.0, ("pop",)), ("c", -2.0, ("pop",))]  # popularity, the seen a left out


def test_when_the_pipeline_queue_is_full_recommend_is_refused_before_reading_redis() -> None:
    class FullBatcher:
        def arrive(self) -> None:
            raise Overloaded("queue_full", "the server is overloaded: 64 requests already wait for the pipeline")

    class NoRedis(Sessions):
        async def session(self, session_id: str, timeout_s: float | None = None) -> SessionTail:
            raise AssertionError("Redis read for a request that is refused anyway")

    metrics = ServeMetrics()
    servicer = RecommenderServicer(StateHolder(state_with()), NoRedis(items=["a"]), metrics,  # type: ignore[arg-type]
                                   batcher=FullBatcher())  # type: ignore[arg-type]
    with pytest.raises(AssertionError, match="aborted: StatusCode.RESOURCE_EXHAUSTED the server is overloaded"):
        asyncio.run(servicer.Recommend(pb2.RecommendRequest(session_id="s1", k=2), Context()))  # type: ignore[arg-type]
    assert metrics.registry.get_sample_value("streamrec_shed_requests_total",
                                             {"rpc": "Recommend", "reason": "queue_full"}) == 1


async def _stream(servicer: RecommenderServicer, requests: Sequence[Any]) -> list[Any]:
    async def each() -> Any:
        for r in requests:
            yield r

    return [a async for a in servicer.RecommendStream(each(), Context())]  # type: ignore[arg-type]


def test_a_stream_answers_every_request_in_order_each_with_its_own_status() -> None:
    from streamrec.serve.servicer import _Undecodable

    metrics = ServeMetrics()
    servicer = RecommenderServicer(StateHolder(state_with([Recommendation(3, 0.5, ("mf",))])),  # type: ignore[arg-type]
                                   Sessions(items=["a"]), metrics)
    requests = [pb2.RecommendRequest(session_id="s1", k=2), pb2.RecommendRequest(session_id="s1", k=0),
                pb2.RecommendRequest(session_id="s2", k=1), _Undecodable("streamrec.v1.RecommendRequest", "truncated"),
                pb2.RecommendRequest(session_id="", k=3)]
    answers = asyncio.run(_stream(servicer, requests))
    assert [a.code for a in answers] == [0, 3, 0, 3, 3]  # OK, INVALID_ARGUMENT...
    assert answer(answers[0].response) == [("c", 0.5, ("mf",)), ("b", -0.5, ("pop",))]  # popularity below
    assert answer(answers[2].response) == [("c", 0.5, ("mf",))]
    assert "k must be between 1 and 1000" in answers[1].message and not answers[1].HasField("response")
    assert "not a valid streamrec.v1.RecommendRequest message" in answers[3].message
    assert "session_id is required" in answers[4].message
    assert metrics.registry.get_sample_value("streamrec_rpc_responses_total",
                                             {"rpc": "RecommendStream", "code": "INVALID_ARGUMENT"}) == 3


def test_a_stream_is_shed_per_request_and_goes_on() -> None:
    class EveryOtherBatcher:
        """Admits every other request; runs what it admits at once."""

        def __init__(self) -> None:
            self.n = 0

        def arrive(self) -> Any:
            self.n += 1
            if self.n % 2 == 0:
                raise Overloaded("queue_full", "the server is overloaded: 64 requests already wait for the pipeline")
            return None

        async def submit(self, job: Any, timeout_s: float | None, arrival: Any) -> list[Recommendation]:
            pipeline, query = job
            return pipeline.recommend_many([query])[0]

    servicer = RecommenderServicer(StateHolder(state_with([Recommendation(3, 0.5, ("mf",))])),  # type: ignore[arg-type]
                                   Sessions(items=["a"]), ServeMetrics(), batcher=EveryOtherBatcher())  # type: ignore[arg-type]
    answers = asyncio.run(_stream(servicer, [pb2.RecommendRequest(session_id=f"s{i}", k=1) for i in range(6)]))
    assert [a.code for a in answers] == [0, 8, 0, 8, 0, 8]  # RESOURCE_EXHAUSTED: retry with backoff
    assert all("overloaded" in a.message for a in answers[1::2])
    assert all(answer(a.response) == [("c", 0.5, ("mf",))] for a in answers[::2])


def test_a_stream_runs_at_most_its_window_of_requests_and_reads_no_further() -> None:
    """Requests run concurrently (one stream fills a batch), but past the window the stream is not read:
    HTTP/2 flow control then holds the client back."""

    class Gated(Sessions):
        def __init__(self) -> None:
            super().__init__(items=["a"])
            self.gate = asyncio.Event()
            self.waiting = 0

        async def session(self, session_id: str, timeout_s: float | None = None) -> SessionTail:
            self.waiting += 1
            await self.gate.wait()
            return self.tail

    async def run() -> tuple[int, int, list[Any]]:
        sessions = Gated()
        servicer = RecommenderServicer(StateHolder(state_with()), sessions, ServeMetrics(),  # type: ignore[arg-type]
                                       stream_window=3)
        pulled = 0

        async def requests() -> Any:
            nonlocal pulled
            for i in range(10):
                pulled += 1
                yield pb2.RecommendRequest(session_id=f"s{i}", k=1)

        out = asyncio.ensure_future(_collect(servicer.RecommendStream(requests(), Context())))  # type: ignore[arg-type]
        for _ in range(50):  # the loop turns it takes: everything that can start has started
            await asyncio.sleep(0)
        held = (pulled, sessions.waiting)
        sessions.gate.set()
        return *held, await out

    pulled, waiting, answers = asyncio.run(run())
    assert (pulled, waiting) == (3, 3)
    assert len(answers) == 10 and all(a.code == 0 for a in answers)


async def _collect(answers: Any) -> list[Any]:
    return [a async for a in answers]
