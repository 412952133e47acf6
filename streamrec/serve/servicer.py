"""The ``streamrec.v1.Recommender`` servicer: validate, read the session, run the pipeline, answer.

Each RPC reads ``holder.state`` once and serves the whole request from that object (see
``streamrec.serve.state``). The pipeline runs on a small thread pool so the event loop keeps
accepting requests, bounded by the request's deadline. Answers that could not use everything they
should (Redis down, no model loaded) carry ``degraded = true``; sessions with no known item get a
``cold_start`` answer (co-occurrence, then popularity). Neither is an error. Items new since the
last retrain reach answers through the worker's live counts (``streamrec.serve.fresh``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence, Set
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np
from google.protobuf.message import DecodeError, Message

from streamrec.errors import InvalidRequest, Overloaded, RedisUnavailable, StreamrecError
from streamrec.rank.features import SessionContext
from streamrec.rank.pipeline import Pipeline, Query, Recommendation
from streamrec.serve.batcher import Arrival, MicroBatcher
from streamrec.serve.fresh import FreshConfig, Scored, blend, fresh_candidates, neighbour_totals
from streamrec.serve.metrics import ServeMetrics
from streamrec.serve.protos import load_stubs
from streamrec.serve.sessions import SessionSource
from streamrec.serve.state import ServingState, StateHolder
from streamrec.serve.validation import Limits, validate_id, validate_ids, validate_k, validate_known_fields

__all__ = ["Answer", "RecommenderServicer", "add_to_server", "recommend_batch", "similar_items", "top_up"]

logger = logging.getLogger(__name__)

pb2, pb2_grpc = load_stubs()


class _Unavailable(StreamrecError):
    """Nothing can answer this request now (no model loaded and no Redis)."""


@dataclass(frozen=True)
class _Undecodable:
    """What the request deserializer gives the handler for bytes that are not the request message.

    grpc.aio answers a deserializer that raises with ``UNKNOWN`` ("Unexpected DecodeError"), before
    any handler runs; handing this on instead lets ``_rpc`` refuse it as ``INVALID_ARGUMENT``,
    counted and logged like any other bad request."""

    message_type: str
    error: str


def _lenient_deserializer(message: type[Message]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return message.FromString(data)
        except DecodeError as exc:
            return _Undecodable(message.DESCRIPTOR.full_name, str(exc))
    return deserialize


def add_to_server(servicer: RecommenderServicer, server: grpc.aio.Server) -> None:
    """``add_RecommenderServicer_to_server`` with request deserializers that never raise (``_Undecodable``);
    the methods are taken from the service's ``DESCRIPTOR``, so a new RPC needs no change here (a
    client-streaming one is taken to stream both ways, as ``RecommendStream`` does)."""
    service = pb2.DESCRIPTOR.services_by_name["Recommender"]
    handlers = {method.name: (grpc.stream_stream_rpc_method_handler if method.client_streaming
                              else grpc.unary_unary_rpc_method_handler)(
        getattr(servicer, method.name),
        request_deserializer=_lenient_deserializer(getattr(pb2, method.input_type.name)),
        response_serializer=getattr(pb2, method.output_type.name).SerializeToString)
        for method in service.methods}
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service.full_name, handlers),))
    server.add_registered_method_handlers(service.full_name, handlers)


@dataclass(frozen=True)
class Answer:
    items: Sequence[Scored]  # (item_id, score, sources), best first
    versions: dict[str, str]
    degraded: bool = False
    cold_start: bool = False

    def message(self) -> Any:
        return pb2.RecommendResponse(
            items=[pb2.ScoredItem(item_id=i, score=s, sources=src) for i, s, src in self.items],
            model_versions=self.versions, degraded=self.degraded, cold_start=self.cold_start)


def similar_items(state: ServingState, item: int, k: int) -> list[tuple[int, float, tuple[str, ...]]]:
    """Co-occurrence neighbours of ``item`` (the ItemKNN similarity), then genre neighbours (content)
    for what co-occurrence cannot fill: an item seen with few others still gets ``k`` answers."""
    table = state.pipeline.table
    row = table.similarity.getrow(item)
    order = np.argsort(-row.data, kind="stable")
    picks = [(int(row.indices[j]), float(row.data[j]), ("itemknn",)) for j in order
             if row.indices[j] != item and row.data[j] > 0][:k]
    if len(picks) < k and table.genres.shape[1]:
        g = table.genres
        norms = np.maximum(np.linalg.norm(g, axis=1), 1e-6)
        cos = (g @ g[item]) / (norms * norms[item])
        cos[[0, item, *(p[0] for p in picks)]] = -np.inf
        for j in np.argsort(-cos, kind="stable")[:k - len(picks)]:
            if np.isfinite(cos[j]) and cos[j] > 0:
                picks.append((int(j), float(cos[j]) - 1.0, ("content",)))  # below every co-occurrence score
    return picks


def top_up(items: Sequence[Scored], ranked: Iterable[str], banned: Set[str], k: int, source: str,
           score: Callable[[int], float]) -> list[Scored]:
    """``items``, then the ``ranked`` ids (best first) that are neither ``banned`` nor among them, up to
    ``k`` in all; the n-th added scores ``score(n)`` and names ``source``. Every popularity back-fill
    (the worker's recent popularity, the training popularity) goes through here."""
    if len(items) >= k:  # the usual case on the request path: nothing to build
        return list(items)
    skip = set(banned) | {i for i, _, _ in items}
    picks = itertools.islice((i for i in ranked if i not in skip), k - len(items))
    return [*items, *((i, score(n), (source,)) for n, i in enumerate(picks))]


def _training_popular(state: ServingState) -> Iterable[str]:
    """Item ids by training popularity, best first, read lazily: a back-fill usually needs a few."""
    return (state.vocab[i] for i in state.popular)


def _recent_score(n: int) -> float:
    return 1.0 / (1 + n)


def recommend_batch(jobs: Sequence[tuple[Pipeline, Query]]) -> list[list[Recommendation]]:
    """The batch function of the servicer's ``MicroBatcher``: one ``recommend_many`` per pipeline (a
    model swap can leave requests of the old and the new state in one batch), answers in order."""
    out: list[list[Recommendation]] = [[] for _ in jobs]
    groups: dict[int, list[int]] = {}
    for i, (pipeline, _) in enumerate(jobs):
        groups.setdefault(id(pipeline), []).append(i)
    for rows in groups.values():
        answers = jobs[rows[0]][0].recommend_many([jobs[i][1] for i in rows])
        for i, answer in zip(rows, answers, strict=True):
            out[i] = answer
    return out


class RecommenderServicer(pb2_grpc.RecommenderServicer):  # type: ignore[misc,name-defined]
    """``batcher`` (over ``recommend_batch``) runs the pipeline for concurrent requests together, and
    sheds what it cannot run in time; without one (unit tests) each request runs alone on the loop."""

    def __init__(self, holder: StateHolder, sessions: SessionSource, metrics: ServeMetrics,
                 limits: Limits = Limits(),
                 clock: Callable[[], float] = time.time,
                 batcher: MicroBatcher[tuple[Pipeline, Query], list[Recommendation]] | None = None,
                 fresh: FreshConfig | None = FreshConfig(), skip_pipeline: bool = False,
                 stream_window: int = 32) -> None:
        self.holder = holder
        self.sessions = sessions
        self.metrics = metrics
        self.limits = limits
        self.clock = clock
        self.batcher = batcher
        self.fresh = fresh  # None: never mix in items the models do not know
        self.skip_pipeline = skip_pipeline  # STREAMREC_SERVE_SKIP_PIPELINE, a benchmark switch (settings.py)
        self.stream_window = stream_window  # requests of one RecommendStream in progress at most
        self._fresh_memo: tuple[object, object, list[str]] = (None, None, [])

    # ---------------------------------------------------------------- RPCs

    async def Recommend(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await self._rpc("Recommend", request, context, self._recommend)

    async def RecommendForSequence(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await self._rpc("RecommendForSequence", request, context, self._for_sequence)

    async def SimilarItems(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await self._rpc("SimilarItems", request, context, self._similar)

    async def RecommendStream(self, requests: AsyncIterator[Any],  # noqa: N802
                              context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        """Each request as ``Recommend`` would answer it, in order, with its status in the answer.

        A call's overhead (taken in by grpc.aio one at a time, a task, metadata, a status) is paid once
        per stream. Requests run concurrently so that one stream fills the batches: up to
        ``stream_window`` are in progress, and the stream is read no further until the oldest is
        answered, so HTTP/2 flow control holds the client back. Shedding is per request
        (``RESOURCE_EXHAUSTED`` in its answer), as for unary calls: a flood never ends a stream. Streams
        past ``STREAMREC_SERVE_MAX_STREAMS`` are refused, and idle ones ended (``streamrec.serve.call_guard``)."""
        loop = asyncio.get_running_loop()
        slots = asyncio.Semaphore(self.stream_window)
        running: asyncio.Queue[asyncio.Task[Any] | None] = asyncio.Queue()  # in the requests' order; None: the end

        async def read() -> None:
            try:
                pending = aiter(requests)
                while True:
                    await slots.acquire()
                    try:
                        request = await anext(pending)
                    except StopAsyncIteration:
                        return
                    running.put_nowait(loop.create_task(self._streamed(request, context)))
            finally:
                running.put_nowait(None)

        reader = loop.create_task(read())
        try:
            while (task := await running.get()) is not None:
                yield await task
                slots.release()
            await reader  # a failed read (the client reset the stream) ends the call with its error
        finally:
            reader.cancel()
            while not running.empty():
                if (task := running.get_nowait()) is not None:
                    task.cancel()

    async def _streamed(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        response, code, details = await self._outcome("RecommendStream", request, context, self._recommend)
        if code is grpc.StatusCode.OK:
            return pb2.RecommendStreamResponse(response=response)
        return pb2.RecommendStreamResponse(code=code.value[0], message=details)

    # ---------------------------------------------------------------- handlers

    async def _recommend(self, request: Any, context: grpc.aio.ServicerContext) -> Answer:
        request.session_id = validate_id(request.session_id, "session_id", self.limits, session=True)
        validate_k(request.k, self.limits)
        request.exclude_item_ids[:] = validate_ids(request.exclude_item_ids, "exclude_item_ids", self.limits)
        # shed before the Redis read: under a flood, a refusal costs no round trip
        arrival = self.batcher.arrive() if self.batcher is not None and not self.skip_pipeline else None
        try:
            return await self._recommend_admitted(request, context, arrival)
        finally:
            if arrival is not None:
                arrival.leave()

    async def _recommend_admitted(self, request: Any, context: grpc.aio.ServicerContext,
                                  arrival: Arrival | None) -> Answer:
        state = self.holder.state
        try:
            tail = await self.sessions.session(request.session_id, context.time_remaining())
        except RedisUnavailable:
            self.metrics.degraded.labels("Recommend", "redis").inc()
            if state is None:
                raise _Unavailable("no model is loaded yet and Redis is unreachable; retry later") from None
            return self._popular_answer(state, [], request.k, request.exclude_item_ids, recent=None, degraded=True)
        if state is None:
            self.metrics.degraded.labels("Recommend", "no_model").inc()
            return await self._recent_only(request.k, request.exclude_item_ids, context)
        index = state.index
        rows = np.array([index.get(i, 0) for i in tail.item_ids], dtype=np.int64)  # 0: unknown to the models
        known = rows > 0
        history = rows[known]
        times = np.array(tail.timestamps, dtype=np.float64)[known] / 1000.0
        # no last_type: the ranker learns from logs without event types (MovieLens ratings), so a type
        # here would feed it an embedding it never trained
        context_ = SessionContext(times=times, now=self.clock())
        return await self._answer(state, "Recommend", history, context_, request, context, tail.item_ids, arrival)

    async def _for_sequence(self, request: Any, context: grpc.aio.ServicerContext) -> Answer:
        request.item_ids[:] = validate_ids(request.item_ids, "item_ids", self.limits)
        validate_k(request.k, self.limits)
        request.exclude_item_ids[:] = validate_ids(request.exclude_item_ids, "exclude_item_ids", self.limits)
        state = self._state()
        history = np.array(state.indices(request.item_ids), dtype=np.int64)
        return await self._answer(state, "RecommendForSequence", history, SessionContext(), request, context,
                                  list(request.item_ids))

    async def _similar(self, request: Any, context: grpc.aio.ServicerContext) -> Answer:
        request.item_id = validate_id(request.item_id, "item_id", self.limits)
        validate_k(request.k, self.limits)
        state = self._state()
        item = state.index.get(request.item_id)
        if item is None:
            self.metrics.cold_start.labels("SimilarItems").inc()
            return await self._cold(state, [request.item_id], request.k, (), context)
        picks = similar_items(state, item, request.k)
        return Answer([(state.vocab[i], s, src) for i, s, src in picks], dict(state.versions))

    # ---------------------------------------------------------------- answers

    def _state(self) -> ServingState:
        state = self.holder.state
        if state is None:
            raise _Unavailable("no model is loaded yet; the health service says when one is")
        return state

    async def _answer(self, state: ServingState, rpc: str, history: np.ndarray, session: SessionContext,
                      request: Any, context: grpc.aio.ServicerContext, session_items: Sequence[str],
                      arrival: Arrival | None = None) -> Answer:
        """``history``: the session's items the models know, as indices; ``session_items``: all its item ids."""
        seen = session_items
        if not len(history):
            self.metrics.cold_start.labels(rpc).inc()
            return await self._cold(state, seen, request.k, request.exclude_item_ids, context)
        exclude = state.indices(request.exclude_item_ids)
        rerank = state.pipeline.rerank
        if rerank.exclude_seen == request.include_seen:  # a copy only when the request asks otherwise
            rerank = dataclasses.replace(rerank, exclude_seen=not request.include_seen)
        query = Query(history, request.k, session, exclude, rerank)
        recs: list[Recommendation] = []
        if self.skip_pipeline:  # everything else runs: the answer is popularity, marked cold_start below
            pass
        elif self.batcher is not None:
            recs = await self.batcher.submit((state.pipeline, query), context.time_remaining(), arrival)
        else:
            recs = state.pipeline.recommend_many([query])[0]
        items: list[Scored] = [(state.vocab[r.item], r.score, r.sources) for r in recs]
        banned = set(request.exclude_item_ids) | (set() if request.include_seen else set(seen))
        floor = min((s for _, s, _ in items), default=0.0)  # fewer candidates than k: popular items fill, below
        items = top_up(items, _training_popular(state), banned, request.k, "pop", lambda n: floor - 1.0 - n)
        banned |= {i for i, _, _ in items}
        fresh = await self._fresh(state, seen, banned, context)
        return Answer(blend(items, fresh, request.k, self.fresh) if fresh else items, dict(state.versions),
                      cold_start=self.skip_pipeline)

    async def _fresh(self, state: ServingState, seen: Sequence[str], banned: set[str],
                     context: grpc.aio.ServicerContext) -> list[tuple[str, float]]:
        """Items the models do not know, among the worker's recently popular ones, by how often they
        co-occurred with the session's latest items (``streamrec.serve.fresh``). No Redis call while
        nothing recently popular is new to the models."""
        if self.fresh is None or not seen:
            return []
        try:
            recent = await self.sessions.recent_popular(context.time_remaining())
            candidates = [i for i in self._fresh_items(state, recent) if i not in banned]
            if not candidates:
                return []
            latest = list(dict.fromkeys(seen[-self.fresh.window:]))
            counts = await self.sessions.cooc_counts(candidates, latest, context.time_remaining())
        except (RedisUnavailable, Overloaded):  # the answer is ready: it goes out without the fresh items
            return []
        return fresh_candidates([[(c, n) for c, n in zip(candidates, col, strict=True)] for col in zip(*counts, strict=True)],
                                state.index, banned, self.fresh)

    def _fresh_items(self, state: ServingState, recent: list[str]) -> list[str]:
        """The recently popular items the models do not know, best first (memoised per list and state)."""
        memo_recent, memo_state, fresh = self._fresh_memo
        if memo_recent is not recent or memo_state is not state:
            fresh = [i for i in recent if i not in state.index][: self.fresh.candidates if self.fresh else 0]
            self._fresh_memo = (recent, state, fresh)
        return fresh

    async def _cold(self, state: ServingState, seen: Sequence[str], k: int, exclude: Sequence[str],
                    context: grpc.aio.ServicerContext) -> Answer:
        """No item the models know: the co-occurrence neighbours of the session's items (new ones included),
        then recent popularity, then training popularity."""
        banned = set(seen) | set(exclude)
        try:
            rows = (await self.sessions.cooccurring(list(seen[-self.fresh.window:]), self.fresh.neighbours,
                                                    context.time_remaining()) if seen and self.fresh else [])
            recent: list[str] | None = await self.sessions.recent_popular(context.time_remaining())
        except RedisUnavailable:
            rows, recent = [], None
        first = [(i, 1.0 + c, ("cooc",)) for i, c in neighbour_totals(rows, banned)[:k]]
        return self._popular_answer(state, list(banned), k, (), recent, degraded=recent is None, cold_start=True,
                                    first=first)

    def _popular_answer(self, state: ServingState, seen: Sequence[str], k: int, exclude: Sequence[str],
                        recent: list[str] | None, degraded: bool, cold_start: bool = False,
                        first: Sequence[Scored] = ()) -> Answer:
        """``first``, then recent popularity (the worker's, from Redis: items new to the models included),
        topped up with training popularity."""
        banned = set(seen) | set(exclude)
        items = top_up(first[:k], recent or [], banned, k, "recent_pop", _recent_score)
        items = top_up(items, _training_popular(state), banned, k, "pop", lambda n: -1.0 - n)
        return Answer(items, dict(state.versions), degraded=degraded, cold_start=cold_start)

    async def _recent_only(self, k: int, exclude: Sequence[str], context: grpc.aio.ServicerContext) -> Answer:
        try:
            recent = await self.sessions.recent_popular(context.time_remaining())
        except RedisUnavailable:
            raise _Unavailable("no model is loaded yet and Redis is unreachable; retry later") from None
        return Answer(top_up([], recent, set(exclude), k, "recent_pop", _recent_score), {}, degraded=True,
                      cold_start=True)

    # ---------------------------------------------------------------- the common path

    async def _rpc(self, rpc: str, request: Any, context: grpc.aio.ServicerContext,
                   handler: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Answer]]) -> Any:
        response, code, details = await self._outcome(rpc, request, context, handler)
        if code is grpc.StatusCode.OK:
            return response
        if code is grpc.StatusCode.DEADLINE_EXCEEDED and context.time_remaining() == 0:
            # gRPC core ends a call at its deadline itself; a status sent after it fails there, and grpc
            # logs each failure at ERROR with a traceback (dozens a flood). A cancelled handler it logs at DEBUG
            raise asyncio.CancelledError
        await context.abort(code, details)

    async def _outcome(self, rpc: str, request: Any, context: grpc.aio.ServicerContext,
                       handler: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Answer]],
                       ) -> tuple[Any, grpc.StatusCode, str]:
        """``(response, OK, "")``, or ``(None, code, details)`` for the client; counted, timed and logged."""
        start = time.perf_counter()
        code, details = grpc.StatusCode.OK, ""
        try:
            if isinstance(request, _Undecodable):
                raise InvalidRequest(f"the request is not a valid {request.message_type} message ({request.error}); "
                                     "check the client against protos/streamrec/v1/recommender.proto")
            validate_known_fields(request)
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                raise TimeoutError
            answer = await handler(request, context)
            if answer.degraded:
                logger.debug("degraded answer event=degraded rpc=%s", rpc)
            return answer.message(), code, details
        except InvalidRequest as exc:
            code, details = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        except TimeoutError:
            code, details = grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the answer was ready"
        except Overloaded as exc:  # load shedding (streamrec.serve.batcher): refused, not run
            code, details = grpc.StatusCode.RESOURCE_EXHAUSTED, str(exc)
            self.metrics.shed.labels(rpc, exc.reason).inc()
        except _Unavailable as exc:
            code, details = grpc.StatusCode.UNAVAILABLE, str(exc)
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED  # the client went away
            raise
        except Exception:
            logger.exception("request failed event=rpc_error rpc=%s", rpc)
            code, details = grpc.StatusCode.INTERNAL, "internal error; the server log has the traceback"
        finally:
            elapsed = time.perf_counter() - start
            self.metrics.latency.labels(rpc).observe(elapsed)
            self.metrics.responses.labels(rpc, code.name).inc()
            if code is not grpc.StatusCode.OK:
                self.metrics.errors.labels(rpc, code.name).inc()
                # a flood sheds thousands a second: streamrec_shed_requests_total tells, a line each would cost CPU
                level = logging.DEBUG if code is grpc.StatusCode.RESOURCE_EXHAUSTED else logging.INFO
                logger.log(level, "request refused event=rpc_status rpc=%s code=%s ms=%.2f details=%r", rpc,
                           code.name, elapsed * 1e3, details)
        return None, code, details
