"""``RunnableClock``: a thread that runs (or waits for a core) counts; a thread that sleeps does not."""

from __future__ import annotations

import threading
import time

from streamrec.serve.runnable import RunnableClock
from tests.serve.helpers import spin


def test_a_thread_that_computes_is_runnable_and_one_that_sleeps_is_not() -> None:
    clock = RunnableClock()
    try:
        mark = clock.mark()
        spin(0.3)
        busy = clock.share(mark)
        mark = clock.mark()
        time.sleep(0.3)
        idle = clock.share(mark)
    finally:
        clock.close()
    # runnable counts the time waiting for a core too, so a busy machine does not lower the first;
    # the counters move at scheduler ticks (up to 10 ms), hence the margins
    assert busy > 0.8, busy
    assert idle < 0.3, idle


def test_each_thread_reads_its_own_counters() -> None:
    clock = RunnableClock()
    shares: list[float] = []

    def sleeper() -> None:
        mark = clock.mark()
        time.sleep(0.3)
        shares.append(clock.share(mark))

    try:
        clock.mark()  # opened for this thread first
        worker = threading.Thread(target=sleeper)
        worker.start()
        spin(0.3)  # this thread's work is not the sleeper's
        worker.join()
    finally:
        clock.close()
    assert shares[0] < 0.3, shares
