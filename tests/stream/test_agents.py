"""The agent's batch handling without Faust or a broker: ``settle`` retries whatever fails and never
raises; ``DeadLetterSender`` loses one record at most for one bad dead letter. The live version of
both, on the real broker, is ``test_worker.py``'s hostile-records test."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
import pytest
from faust.exceptions import ProducerSendError
from redis.exceptions import ResponseError

from streamrec.errors import RedisRolledBack
from streamrec.events.schema import EventLimits
from streamrec.stream.agents import DeadLetterSender, commit_acked, one_in_flight, settle
from streamrec.stream.processor import BatchResult, DeadLetter, Record, validate

NOW = 1_750_000_000_000


def rec(offset: int, value: bytes | None, key: bytes | None = b"s1") -> Record:
    return Record("clicks", 2, offset, key, value)


def event(i: int) -> bytes:
    return orjson.dumps({"event_id": f"e{i}", "session_id": "s1", "item_id": f"i{i}", "event_type": "view",
                         "timestamp": NOW - 100 + i})


class FlakyWriter:
    """Fails its first applies with the given errors, then validates like ``SessionWriter``."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.applies = 0
        self.counts: list[dict[str, int]] = []

    async def apply(self, records: Sequence[Record]) -> BatchResult:
        self.applies += 1
        if self.failures:
            raise self.failures.pop(0)
        good, dead = validate(records, EventLimits(), NOW)
        return BatchResult(applied=len(good), dead=dead)

    async def count(self, counts: Mapping[str, int]) -> None:
        self.counts.append(dict(counts))


class Broker:
    """Faust's ``Topic.send`` as the agent sees it: ``refuse`` raises at once (a record over the producer's
    limit), ``fail_ack`` fails the delivery future (the broker said no)."""

    def __init__(self, refuse: int | None = None, fail_ack: int | None = None) -> None:
        self.refuse, self.fail_ack = refuse, fail_ack
        self.sent: list[dict[str, Any]] = []

    async def send(self, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]) -> asyncio.Future[None]:
        offset = int(dict(headers)["streamrec.error.offset"])
        if offset == self.refuse:
            raise ProducerSendError("Error while sending: MessageSizeTooLargeError()")
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if offset == self.fail_ack:
            ack.set_exception(RuntimeError("RecordTooLargeError"))
        else:
            self.sent.append(orjson.loads(value))
            ack.set_result(None)
        return ack


def test_a_failing_batch_is_retried_with_backoff_until_it_passes_and_never_raises() -> None:
    """Before, any error out of a batch crashed the agent, and Faust acked the batch on the way out."""
    writer, naps = FlakyWriter(ResponseError("CROSSSLOT"), ValueError("a bug"), OSError("gone")), []

    async def nap(s: float) -> None:
        naps.append(s)

    asyncio.run(settle(writer, DeadLetterSender(Broker().send, 1024), [rec(0, event(0))], sleep=nap))
    assert writer.applies == 4 and naps == [0.1, 0.2, 0.4]
    assert writer.counts == [{"dead_letters_sent": 0, "dead_letters_lost": 0, "batch_retries": 3}]


def test_counters_that_cannot_be_written_do_not_unsettle_a_settled_batch() -> None:
    """The batch is in Redis and its dead letters sent: a failing counter update must not raise (the
    agent would crash and the batch be redone)."""
    class CounterlessWriter(FlakyWriter):
        async def count(self, counts: Mapping[str, int]) -> None:
            raise OSError("Redis went away")

    writer = CounterlessWriter()
    asyncio.run(settle(writer, DeadLetterSender(Broker().send, 1024), [rec(0, event(0)), rec(1, b"{bad")]))
    assert writer.applies == 1


def test_a_dead_letter_that_cannot_be_sent_costs_that_record_alone(caplog: pytest.LogCaptureFixture) -> None:
    writer, broker = FlakyWriter(), Broker(refuse=1, fail_ack=3)
    records = [rec(0, event(0)), rec(1, b"x" * 5000), rec(2, b"{bad"), rec(3, b"[1]"), rec(4, event(4), key=None)]
    with caplog.at_level(logging.ERROR):
        asyncio.run(settle(writer, DeadLetterSender(broker.send, 1024), records))
    assert [(d["source"]["offset"], d["reason"]) for d in broker.sent] == [(2, "not_json"), (4, "missing_key")]
    assert writer.counts == [{"dead_letters_sent": 2, "dead_letters_lost": 2, "batch_retries": 0}]
    lost = [r.getMessage() for r in caplog.records if "could not be sent" in r.getMessage()]
    assert len(lost) == 2 and "clicks[2]@1 (oversized)" in lost[0] and "clicks[2]@3 (not_object)" in lost[1]


def test_text_from_records_is_escaped_in_the_worker_log(caplog: pytest.LogCaptureFixture) -> None:
    hostile = orjson.dumps({"event_id": "e", "session_id": "s1", "item_id": "i", "event_type": "view",
                            "timestamp": NOW, "\x1b[2J\x1b[31mpwned\r\n2026 INFO forged": 1})
    with caplog.at_level(logging.WARNING):
        asyncio.run(settle(FlakyWriter(), DeadLetterSender(Broker().send, 1024), [rec(0, hostile)]))
    text = caplog.text
    assert "\\x1b[2J\\x1b[31mpwned\\r\\n2026 INFO forged" in text
    assert "\x1b" not in text and "\r" not in text


def test_a_dead_letter_keeps_an_ordinary_detail_as_it_is() -> None:
    letter = DeadLetter(rec(0, b"{"), "not_json", "plain")
    assert orjson.loads(letter.encode(NOW, 1024).value)["detail"] == "plain"


def test_a_redis_that_lost_applied_writes_is_not_retried_but_raised() -> None:
    """Retrying would apply the batch on top of the hole Redis left; the worker must stop and resume."""
    writer = FlakyWriter(RedisRolledBack("Redis lost acknowledged writes"))
    with pytest.raises(RedisRolledBack):
        asyncio.run(settle(writer, DeadLetterSender(Broker().send, 1024), [rec(0, event(0))]))
    assert writer.applies == 1


class Batches:
    """An async source of batches that records when each is taken, against the handlings in ``log``."""

    def __init__(self, n: int, log: list[str]) -> None:
        self.n, self.log = n, log

    async def __aiter__(self) -> Any:
        for i in range(self.n):
            await asyncio.sleep(0)
            self.log.append(f"take {i}")
            yield i


def run_in_flight(batches: Batches, handle: Any) -> list[None]:
    async def main() -> list[None]:
        return [x async for x in one_in_flight(batches, handle)]

    return asyncio.run(main())


def test_one_in_flight_gathers_the_next_batch_while_one_is_handled_but_handles_them_in_order() -> None:
    log: list[str] = []

    async def handle(i: int) -> bool:
        log.append(f"start {i}")
        for _ in range(3):  # long enough for the source to hand over the next batch meanwhile
            await asyncio.sleep(0)
        log.append(f"end {i}")
        return True

    assert len(run_in_flight(Batches(3, log), handle)) == 3
    assert [x for x in log if x.startswith(("start", "end"))] == ["start 0", "end 0", "start 1", "end 1", "start 2",
                                                                  "end 2"]
    assert log.index("take 1") < log.index("end 0")  # gathered while batch 0 was being written
    assert log[-1] == "end 2"  # the last batch is finished before the loop ends


def test_one_in_flight_takes_nothing_more_once_a_handling_says_stop() -> None:
    log: list[str] = []

    async def handle(i: int) -> bool:
        log.append(f"handled {i}")
        return i != 1

    run_in_flight(Batches(5, log), handle)
    assert "handled 2" not in log and "handled 1" in log


def test_one_in_flight_cancels_a_running_handling_when_the_agent_stops() -> None:
    log: list[str] = []

    async def handle(i: int) -> bool:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            log.append(f"cancelled {i}")
            raise
        log.append(f"acked {i}")
        return True

    async def main() -> None:
        agent = one_in_flight(Batches(1, log), handle)
        await agent.__anext__()  # batch 0 handed over
        await asyncio.sleep(0)  # and its handling started
        await agent.aclose()  # the agent stops: Faust cancels it, or its generator is closed

    asyncio.run(main())
    assert log == ["take 0", "cancelled 0"]


class CommittingConsumer:
    """Faust's ``Consumer.commit`` as ``commit_acked`` sees it: the first call finds a commit in flight
    and only waits for it (False); ``fail`` makes every call raise."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.fail = fail
        self.calls = 0

    async def commit(self) -> bool:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return self.calls > 1


def test_commit_acked_commits_again_after_waiting_for_a_commit_in_flight() -> None:
    consumer = CommittingConsumer()
    asyncio.run(commit_acked(consumer))  # type: ignore[arg-type]
    assert consumer.calls == 2


def test_commit_acked_logs_a_failed_commit_and_lets_the_crash_go_on(caplog: pytest.LogCaptureFixture) -> None:
    consumer = CommittingConsumer(fail=RuntimeError("coordinator not available"))
    with caplog.at_level(logging.WARNING):
        asyncio.run(commit_acked(consumer))  # type: ignore[arg-type]
    assert consumer.calls == 1
    assert "committing the acked offsets before stopping failed" in caplog.text
    assert "coordinator not available" in caplog.text
