"""The ``streamrec.v1.Recommender`` servicer: validate, read the session, run the pipeline, answer.

Each RPC reads ``holder.state`` once and serves the whole request from that object (see
``streamrec.serve.state``). The pipeline runs on a small thread pool so the event loop keeps
accepting requests, bounded by the request's deadline. Answers that could not use everything they
should (Redis down, no model loaded) carry ``degraded = true``; sessions with no known item get a
``cold_start`` popularity answer. Neither is an error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from streamrec.rank.features import SessionContext
from streamrec.serve.metrics import ServeMetrics
from streamrec.serve.protos import load_stubs
from streamrec.serve.sessions import RedisUnavailable, SessionSource
from streamrec.serve.state import ServingState, StateHolder
from streamrec.serve.validation import InvalidRequest, Limits, validate_id, validate_ids, validate_k, \
    validate_known_fields

__all__ = ["Answer", "RecommenderServicer", "similar_items"]

logger = logging.getLogger(__name__)

pb2, pb2_grpc = load_stubs()


class _Unavailable(Exception):
    """Nothing can answer this request now (no model loaded and no Redis)."""


@dataclass(frozen=True)
class Answer:
    items: Sequence[tuple[str, float, tuple[str, ...]]]  # (item_id, score, sources), best first
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


class RecommenderServicer(pb2_grpc.RecommenderServicer):  # type: ignore[misc,name-defined]
    def __init__(self, holder: StateHolder, sessions: SessionSource, metrics: ServeMetrics,
                 limits: Limits = Limits(), executor: Executor | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.holder = holder
        self.sessions = sessions
        self.metrics = metrics
        self.limits = limits
        self.executor = executor  # None: run the pipeline on the event loop
        self.clock = clock

    # ---------------------------------------------------------------- RPCs

    async def Recommend(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await self._rpc("Recommend", request, context, self._recommend)

    async def RecommendForSequence(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await self._rpc("RecommendForSequence", request, context, self._for_sequence)

    async def SimilarItems(self, request: Any, context: grpc.aio.ServicerContext) -> Any:  # noqa: N802
        return await self._rpc("SimilarItems", request, context, self._similar)

    # ---------------------------------------------------------------- handlers

    async def _recommend(self, request: Any, context: grpc.aio.ServicerContext) -> Answer:
        validate_id(request.session_id, "session_id", self.limits)
        validate_k(request.k, self.limits)
        validate_ids(request.exclude_item_ids, "exclude_item_ids", self.limits)
        state = self.holder.state
        try:
            events = await self.sessions.session(request.session_id, context.time_remaining())
        except RedisUnavailable:
            self.metrics.degraded.labels("Recommend", "redis").inc()
            if state is None:
                raise _Unavailable("no model is loaded yet and Redis is unreachable; retry later") from None
            return self._popular_answer(state, [], request.k, request.exclude_item_ids, recent=None, degraded=True)
        if state is None:
            self.metrics.degraded.labels("Recommend", "no_model").inc()
            return await self._recent_only(request.k, request.exclude_item_ids, context)
        known = [(state.index[e.item_id], e) for e in events if e.item_id in state.index]
        history = np.array([i for i, _ in known], dtype=np.int64)
        times = np.array([e.timestamp / 1000.0 for _, e in known], dtype=np.float64)
        last_type = events[-1].event_type if events else None
        context_ = SessionContext(times=times, now=self.clock(), last_type=last_type)
        return await self._answer(state, "Recommend", history, context_, request, context)

    async def _for_sequence(self, request: Any, context: grpc.aio.ServicerContext) -> Answer:
        validate_ids(request.item_ids, "item_ids", self.limits)
        validate_k(request.k, self.limits)
        validate_ids(request.exclude_item_ids, "exclude_item_ids", self.limits)
        state = self._state()
        history = np.array(state.indices(request.item_ids), dtype=np.int64)
        return await self._answer(state, "RecommendForSequence", history, SessionContext(), request, context)

    async def _similar(self, request: Any, context: grpc.aio.ServicerContext) -> Answer:
        validate_id(request.item_id, "item_id", self.limits)
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
                      request: Any, context: grpc.aio.ServicerContext) -> Answer:
        seen = [state.vocab[i] for i in history]
        if not len(history):
            self.metrics.cold_start.labels(rpc).inc()
            return await self._cold(state, seen, request.k, request.exclude_item_ids, context)
        exclude = state.indices(request.exclude_item_ids)
        rerank = dataclasses.replace(state.pipeline.rerank, exclude_seen=not request.include_seen)
        run = functools.partial(state.pipeline.recommend, history, request.k, session, exclude, rerank)
        if self.executor is None:
            recs = run()
        else:
            future = asyncio.get_running_loop().run_in_executor(self.executor, run)
            recs = await asyncio.wait_for(future, context.time_remaining())
        items = [(state.vocab[r.item], r.score, r.sources) for r in recs]
        if len(items) < request.k:  # fewer candidates than asked for: fill with popular items
            banned = {i for i, _, _ in items} | set(request.exclude_item_ids) | (set() if request.include_seen else set(seen))
            floor = min((s for _, s, _ in items), default=0.0)
            fill = [state.vocab[i] for i in state.popular[: request.k + len(banned)] if state.vocab[i] not in banned]
            items += [(i, floor - 1.0 - n, ("pop",)) for n, i in enumerate(fill[: request.k - len(items)])]
        return Answer(items, dict(state.versions))

    async def _cold(self, state: ServingState, seen: Sequence[str], k: int, exclude: Sequence[str],
                    context: grpc.aio.ServicerContext) -> Answer:
        try:
            recent: list[str] | None = await self.sessions.recent_popular(context.time_remaining())
        except RedisUnavailable:
            recent = None
        return self._popular_answer(state, list(seen) + list(exclude), k, (), recent, degraded=recent is None,
                                    cold_start=True)

    def _popular_answer(self, state: ServingState, seen: Sequence[str], k: int, exclude: Sequence[str],
                        recent: list[str] | None, degraded: bool, cold_start: bool = False) -> Answer:
        """Recent popularity (the worker's, from Redis) restricted to items the models know, topped up
        with training popularity."""
        banned = set(seen) | set(exclude)
        ids = [i for i in (recent or []) if i in state.index and i not in banned][:k]
        items = [(i, 1.0 / (1 + n), ("recent_pop",)) for n, i in enumerate(ids)]
        if len(items) < k:
            taken = banned | set(ids)
            more = (state.vocab[i] for i in state.popular[: k + len(taken)])
            items += [(i, -1.0 - n, ("pop",)) for n, i in enumerate([i for i in more if i not in taken][: k - len(items)])]
        return Answer(items, dict(state.versions), degraded=degraded, cold_start=cold_start)

    async def _recent_only(self, k: int, exclude: Sequence[str], context: grpc.aio.ServicerContext) -> Answer:
        try:
            recent = await self.sessions.recent_popular(context.time_remaining())
        except RedisUnavailable:
            raise _Unavailable("no model is loaded yet and Redis is unreachable; retry later") from None
        banned = set(exclude)
        ids = [i for i in recent if i not in banned][:k]
        return Answer([(i, 1.0 / (1 + n), ("recent_pop",)) for n, i in enumerate(ids)], {}, degraded=True,
                      cold_start=True)

    # ---------------------------------------------------------------- the common path

    async def _rpc(self, rpc: str, request: Any, context: grpc.aio.ServicerContext,
                   handler: Callable[[Any, grpc.aio.ServicerContext], Awaitable[Answer]]) -> Any:
        start = time.perf_counter()
        code, details = grpc.StatusCode.OK, ""
        try:
            validate_known_fields(request)
            remaining = context.time_remaining()
            if remaining is not None and remaining <= 0:
                raise TimeoutError
            answer = await handler(request, context)
            if answer.degraded:
                logger.debug("degraded answer event=degraded rpc=%s", rpc)
            return answer.message()
        except InvalidRequest as exc:
            code, details = grpc.StatusCode.INVALID_ARGUMENT, str(exc)
        except TimeoutError:
            code, details = grpc.StatusCode.DEADLINE_EXCEEDED, "the deadline passed before the answer was ready"
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
                logger.info("request refused event=rpc_status rpc=%s code=%s ms=%.2f details=%r", rpc, code.name,
                            elapsed * 1e3, details)
        await context.abort(code, details)
