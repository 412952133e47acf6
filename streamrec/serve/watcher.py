"""Watch the registry for a new ranker version; load, check and swap it in without a failed request.

The ranker's ``CURRENT`` pointer is polled every ``poll_s`` seconds (a file read), and ``notify()``
checks at once (wired to a Redis pub/sub notice by the server). A new version is loaded on a
thread of its own, checked (``RegistryLoader``), and only then made current by one assignment.
A version that fails is logged, counted and remembered, and the state in service is untouched.
It is tried again with backoff (one poll interval, then twice as long each time, at most
``MAX_RETRY_S``), since a failure may pass: a version seen while still incomplete, data not yet
copied to this machine. Each attempt logs one refusal and counts one in the metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from streamrec import registry as reg
from streamrec.errors import LoadError
from streamrec.serve.loader import RegistryLoader
from streamrec.serve.metrics import ServeMetrics
from streamrec.serve.state import ServingState, StateHolder

__all__ = ["MAX_RETRY_S", "ModelWatcher"]

logger = logging.getLogger(__name__)

MAX_RETRY_S = 300.0  # the longest wait before a refused version is tried again


class ModelWatcher:
    def __init__(self, loader: RegistryLoader, holder: StateHolder, metrics: ServeMetrics, *, poll_s: float = 5.0,
                 on_change: Callable[[ServingState | None, str | None], None] = lambda state, problem: None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.loader = loader
        self.holder = holder
        self.metrics = metrics
        self.poll_s = poll_s
        self.on_change = on_change  # (state, problem): the server updates health from it
        self.clock = clock
        self.refused: dict[str, str] = {}  # version -> why (its last attempt)
        self._retry: dict[str, tuple[int, float]] = {}  # refused version -> (attempts, when to try again)
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="streamrec-model-load")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="streamrec-model-watcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass  # the cancellation we asked for
            self._task = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    def notify(self) -> None:
        """Check the registry now (a publish notice arrived)."""
        self._wake.set()

    async def check(self) -> bool:
        """Load the CURRENT version if it is new and not waiting out a backoff; True when it was swapped in."""
        wanted = reg.read_pointer(self.loader.registry, reg.RANKER)
        state = self.holder.state
        if wanted is None:
            if state is None:
                self._refuse("none", f"no ranker version is CURRENT under {self.loader.registry}")
            return False
        if state is not None and state.ranker_version == wanted:
            return False
        self._retry = {v: r for v, r in self._retry.items() if v == wanted}  # only CURRENT's is kept
        attempts, due = self._retry.get(wanted, (0, 0.0))
        if self.clock() < due:
            return False
        logger.info("loading model event=model_loading model=%s version=%s attempt=%s", reg.RANKER, wanted,
                    attempts + 1)
        try:
            new = await asyncio.get_running_loop().run_in_executor(self._pool, self.loader.load, wanted)
        except LoadError as exc:
            delay = min(self.poll_s * 2.0 ** attempts, MAX_RETRY_S)
            self._retry[wanted] = (attempts + 1, self.clock() + delay)
            self._refuse(wanted, str(exc), retry_s=delay)
            return False
        self._retry.pop(wanted, None)
        self.refused.pop(wanted, None)
        old = self.holder.swap(new)
        self.metrics.swaps.labels("swapped").inc()
        self.metrics.set_versions(new.versions)
        logger.info("model swapped event=model_swapped versions=%s previous=%s", dict(new.versions),
                    dict(old.versions) if old else None)
        self.on_change(new, None)
        return True

    def _refuse(self, version: str, why: str, retry_s: float | None = None) -> None:
        """Record, count, log and announce one refusal (``retry_s``: when it is tried again; None: a
        missing pointer, which is refused once and found by the next poll that sees one)."""
        if retry_s is None and version in self.refused:
            return
        self.refused[version] = why
        self.metrics.swaps.labels("refused").inc()
        serving = self.holder.state
        logger.error("model refused event=model_refused version=%s serving=%s retry_s=%s reason=%s", version,
                     serving.ranker_version if serving else None, retry_s, why)
        self.on_change(serving, why)

    async def _run(self) -> None:
        while True:
            try:
                await self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive any surprise; the old state keeps serving
                logger.exception("registry check failed event=watch_error")
            # not asyncio.wait_for: on Python 3.11, a notice arriving as stop() cancels makes it return
            # and drop the cancellation, and the watcher outlived stop()
            try:
                async with asyncio.timeout(self.poll_s):
                    await self._wake.wait()
            except TimeoutError:
                pass  # time for the next poll
            self._wake.clear()
