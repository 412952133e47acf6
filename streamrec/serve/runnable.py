"""How much of a stretch of wall time the calling thread was runnable: running, or ready to run and
waiting for a core.

A Redis read that times out on the event loop has two possible causes: Redis did not answer, or the
loop was too busy to read an answer that had arrived. The loop's thread tells them apart: while it
waits for I/O it sleeps, and while it runs batches, takes in calls or waits for a core beside other
processes it is runnable. Linux counts both in ``/proc/self/task/<tid>/schedstat`` (nanoseconds on a
core, nanoseconds waiting for one; brought up to date at each scheduler tick, so a share over a wait of
many ticks is close enough). Counting the wait matters on a saturated machine: there the loop
shares the cores with the other server processes and the load generator, and a loop that waits for a
core is as unable to read an answer as one that runs. Where schedstat cannot be read, the thread's
CPU time stands in, which leaves out the wait.

A mark costs one ``pread`` (about a microsecond); the share is parsed only when asked for.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass

__all__ = ["Mark", "RunnableClock"]


@dataclass(frozen=True)
class Mark:
    wall_s: float
    counters: bytes | float  # schedstat's text, or the thread's CPU seconds


class RunnableClock:
    """``mark()`` on a thread, later ``share(mark)`` on the same thread: the share of the wall time since
    the mark that the thread was runnable (0 to about 1)."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._thread: int | None = None

    def mark(self) -> Mark:
        return Mark(time.perf_counter(), self._counters())

    def share(self, mark: Mark) -> float:
        now = self.mark()
        wall = now.wall_s - mark.wall_s
        if wall <= 0 or type(now.counters) is not type(mark.counters):  # schedstat went away between them
            return 0.0
        return max(0.0, _seconds(now.counters) - _seconds(mark.counters)) / wall

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _counters(self) -> bytes | float:
        thread = threading.get_native_id()
        if self._thread != thread:  # first use, or another thread: schedstat is per thread
            self.close()
            self._thread = thread
            try:
                self._fd = os.open(f"/proc/self/task/{thread}/schedstat", os.O_RDONLY)
            except OSError:
                self._fd = None
        if self._fd is not None:
            try:
                return os.pread(self._fd, 64, 0)
            except OSError:
                self.close()
        return time.thread_time()


def _seconds(counters: bytes | float) -> float:
    if isinstance(counters, float):
        return counters
    running_ns, waiting_ns = counters.split()[:2]
    return (int(running_ns) + int(waiting_ns)) / 1e9
