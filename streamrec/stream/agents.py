"""The session agent: a thin loop that hands batches to ``SessionWriter`` and acks what it settled.

A batch's offsets may be committed only once the batch is settled: its valid events in Redis, its
dead letters acked by the broker or counted as lost. Faust's ``take_events`` acks a batch whenever
the loop body leaves it, also when the body raised, and the agent then crashes and is restarted
around the events it had buffered: valid events were committed unapplied. So the batches come from
``noack_take`` and are acked here, after ``settle``, which never raises: a failure is retried with
backoff until it passes (``apply`` is idempotent), and one record whose dead letter cannot be sent
is skipped alone. Only a stop (cancellation) leaves ``settle`` early, and then nothing is acked, or a
Redis that lost applied writes (``RedisRolledBack``): the worker then stops, unacked, and its restart
re-reads from what Redis kept (``streamrec.stream.resume``).

Faust gathers the next batch while this one is written (``one_in_flight``), so that the worker's CPU
and Redis's overlap; still only one batch is written at a time, in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Protocol, TypeVar

import faust
from faust.types import ConsumerT, EventT

from streamrec.errors import RedisRolledBack
from streamrec.settings import Settings
from streamrec.stream.escape import escape_text
from streamrec.stream.modes import FaustDryRun
from streamrec.stream.processor import BatchResult, CountingWriter, DeadLetter, Record, SessionWriter
from streamrec.stream.topics import Topics

__all__ = ["DeadLetterSender", "Writer", "commit_acked", "one_in_flight", "register_session_agent", "settle"]

log = logging.getLogger(__name__)

B = TypeVar("B")
RETRY_MAX_S = 30.0  # the longest wait between two tries of a failing batch


def _record(event: EventT) -> Record:
    m = event.message
    return Record(m.topic, m.partition, m.offset, m.key, m.value)


def register_session_agent(app: faust.App, topics: Topics, settings: Settings,
                           dry_run: FaustDryRun | None = None) -> None:
    @app.agent(topics.clicks, name="sessions")
    async def sessions(stream: faust.StreamT[bytes]) -> AsyncIterator[None]:
        writer_cm = SessionWriter(settings) if dry_run is None else CountingWriter(settings, parse=dry_run == "parse")
        async with writer_cm as writer:
            sender = DeadLetterSender(topics.dead_letters.send, settings.dead_letter_payload_bytes)

            async def settle_and_ack(events: Sequence[EventT]) -> bool:
                try:
                    await settle(writer, sender, [_record(e) for e in events])
                except RedisRolledBack as exc:
                    log.critical("%s", exc)
                    await commit_acked(app.consumer)
                    await app.crash(exc)
                    return False
                for event in events:
                    await stream.ack(event)
                return True

            batches = stream.noack_take(settings.batch_max, within=settings.batch_within_s)
            async for _ in one_in_flight(batches, settle_and_ack):
                yield None

    _ = sessions


async def commit_acked(consumer: ConsumerT) -> None:
    """Commit what the batches before this one acked, before ``app.crash``.

    A crash marks every service crashed at once, the consumer's thread and its method queue among
    them, and Faust's commit on the way out goes through that thread: with acked offsets still
    uncommitted, the worker then waited for it forever instead of exiting (the resume test: 2 runs in
    53 with commits every second, 1 in 7 with every 30 s; none in 24 since). Committed first,
    nothing is left to commit on the way out. ``commit`` only waits when a commit is already in
    flight, so a second call commits what that one did not cover; nothing is acked meanwhile (only
    this agent acks). A commit that fails is logged: the restart resumes from what Redis kept either
    way."""
    for _ in range(2):
        try:
            await consumer.commit()
        except Exception as exc:  # noqa: BLE001 - the worker is stopping; the crash must go on
            log.warning("committing the acked offsets before stopping failed: %s", escape_text(repr(exc), 500))
            return


async def one_in_flight(batches: AsyncIterable[B], handle: Callable[[B], Awaitable[bool]]) -> AsyncIterator[None]:
    """``handle`` each batch in order, one at a time, without waiting for it before gathering the next.

    The worker's CPU (Faust taking the next batch off the consumer) then overlaps Redis's (the script
    applying this one). Handling a batch starts only once the one before it has finished, so batches
    reach Redis in order and each is acked after its own write, as when handled inline. Yields once
    per batch handed over. Stops, taking no more, when a handling returns False (the worker is
    crashing); on the way out, cancelled included, a handling still running is cancelled and waited
    for, and then acks nothing.
    """
    in_flight: asyncio.Task[bool] | None = None
    try:
        async for batch in batches:
            if in_flight is not None and not await in_flight:
                return
            in_flight = asyncio.ensure_future(handle(batch))
            yield None
        if in_flight is not None:
            await in_flight
    finally:
        if in_flight is not None and not in_flight.done():
            in_flight.cancel()
            await asyncio.gather(in_flight, return_exceptions=True)


Send = Callable[..., Awaitable[Awaitable[object]]]  # Faust's ``Topic.send``: sends, returns the ack's future


class Writer(Protocol):
    """What ``settle`` needs of ``SessionWriter`` (and of the dry run's ``CountingWriter``)."""

    async def apply(self, records: Sequence[Record]) -> BatchResult: ...

    async def count(self, counts: Mapping[str, int]) -> None: ...


class DeadLetterSender:
    """Sends dead letters and waits for the broker's acks. A letter that cannot be encoded, sent or
    acked (too large, refused, a timeout) is logged with its source offset, counted, and skipped: the
    others, and the batch, go on."""

    def __init__(self, send: Send, max_payload_bytes: int) -> None:
        self._send, self.max_payload_bytes = send, max_payload_bytes

    async def send(self, letters: Sequence[DeadLetter], now_ms: int) -> int:
        """Send ``letters``; how many of them were lost."""
        pending: list[tuple[DeadLetter, Awaitable[object]]] = []
        lost = 0
        for letter in letters:
            try:
                message = letter.encode(now_ms, self.max_payload_bytes)
                pending.append((letter, await self._send(key=message.key, value=message.value,
                                                         headers=message.headers)))
            except Exception as exc:  # noqa: BLE001 - whatever it is, it is this record's alone
                lost += self._lost(letter, exc)
        acks = await asyncio.gather(*(ack for _, ack in pending), return_exceptions=True)
        for (letter, _), ack in zip(pending, acks, strict=True):
            if isinstance(ack, BaseException):
                lost += self._lost(letter, ack)
        return lost

    @staticmethod
    def _lost(letter: DeadLetter, exc: BaseException) -> int:
        r = letter.record
        log.error("the dead letter of %s[%d]@%d (%s) could not be sent, the record is skipped: %s",
                  escape_text(r.topic), r.partition, r.offset, letter.reason, escape_text(repr(exc), 500))
        return 1


async def settle(writer: Writer, sender: DeadLetterSender, records: Sequence[Record],
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
    """Apply one batch and send its dead letters; return only once both are done. Raises only
    ``CancelledError`` and ``RedisRolledBack``: whatever else fails is logged and retried with backoff,
    the batch left unacked."""
    delay, retries = 0.1, 0
    while True:
        try:
            result = await writer.apply(records)
            break
        except RedisRolledBack:
            raise
        except Exception as exc:  # noqa: BLE001 - a bug, a script error, Redis out of memory: retry, never ack
            retries += 1
            first = records[0]
            log.error("a batch of %d record(s) from %s[%d]@%d failed (try %d); its offsets stay uncommitted and "
                      "it is retried in %.1fs:\n%s", len(records), escape_text(first.topic), first.partition,
                      first.offset, retries, delay, escape_text("".join(traceback.format_exception(exc)), keep="\n"))
            await sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)
    if result.duplicates:
        log.info("skipped %d redelivered event(s) already in Redis", result.duplicates)
    lost = 0
    if result.dead:
        lost = await sender.send(result.dead, int(time.time() * 1000))
        first_dead = result.dead[0]
        log.warning("%d event(s) refused, %d sent to the dead-letter topic; first: %s (%s)", len(result.dead),
                    len(result.dead) - lost, first_dead.reason, escape_text(first_dead.detail, 300))
    if result.dead or retries:
        try:
            await writer.count({"dead_letters_sent": len(result.dead) - lost, "dead_letters_lost": lost,
                                "batch_retries": retries})
        except Exception as exc:  # noqa: BLE001 - the batch is settled; its counters are for people, not for acking
            log.error("could not update the worker's counters (%s); the batch is settled all the same",
                      escape_text(repr(exc), 500))
