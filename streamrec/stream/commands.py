"""The stream's commands: ``publish`` clicks to the topic, run the ``worker`` that applies them to Redis,
and look at what it keeps (``sessions``, ``stats``) and what it refused (``dlq``). Parsing and printing only.

``publish`` is here rather than in ``streamrec.publish`` because it creates the stream's topics and
checks events against the worker's limits, which that lower layer does not import.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from streamrec.data.names import MOVIELENS
from streamrec.settings import Settings
from streamrec.stream.modes import DRY_RUNS

__all__ = ["register"]


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.stream.worker import run_worker

    run_worker(settings, loglevel=args.loglevel, dry_run=args.dry_run)
    return 0


def _publish(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.publish.producer import EventProducer
    from streamrec.publish.run import publish
    from streamrec.publish.sources import dataset_events, jsonl_lines
    from streamrec.stream.processor import limits_from
    from streamrec.stream.topics import ensure_topics

    ensure_topics(settings)
    if args.dataset:
        source = dataset_events(args.dataset, settings.data_dir, args.limit, args.session_gap)
    else:
        source = jsonl_lines(args.file, args.limit)
    with EventProducer(settings) as producer:
        report = publish(source, producer, rate=args.rate, validate=not args.no_validate,
                         limits=limits_from(settings), total=args.limit, progress=not args.quiet)
    stats = report.stats
    rate = stats.sent / report.seconds if report.seconds else 0.0
    print(f"published {stats.sent} event(s) to {settings.clicks_topic} in {report.seconds:.1f}s "
          f"({rate:,.0f} ev/s); acked {stats.acked}, failed {stats.failed}, invalid {len(report.invalid)}")
    for line_no, why in report.invalid[:20]:
        print(f"  line {line_no}: {why}", file=sys.stderr)
    for err in stats.errors:
        print(f"  delivery error: {err}", file=sys.stderr)
    return 1 if stats.failed or report.invalid else 0


def _sessions(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.stream.inspect import list_sessions, show_sessions

    text = asyncio.run(show_sessions(settings, args.session_ids, args.json) if args.action == "show"
                       else list_sessions(settings, args.limit, args.json))
    print(text)
    return 0


def _stats(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.stream.inspect import consumer_lag, stats, wait_for_lag

    if args.wait_lag:
        wait_for_lag(settings, args.wait_lag)
    result = {**asyncio.run(stats(settings, args.top)), "consumer_lag": sum(consumer_lag(settings).values())}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"events applied     {result['events_applied']:,}")
    print(f"live sessions      {result['live_sessions']:,}")
    print(f"consumer lag       {result['consumer_lag']:,}")
    for name in ("dead_letters_sent", "dead_letters_lost", "batch_retries"):
        print(f"{name.replace('_', ' '):18} {result.get(name, 0):,}")
    print("popular now        " + "; ".join(result["popular_now"]))
    print("popular all time   " + "; ".join(f"{item} ({n})" for item, n in result["popular_all_time"]))
    return 0


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.stream.inspect import format_dead_letter, tail_dead_letters

    for letter in tail_dead_letters(settings, args.n):
        print(json.dumps(letter) if args.json else format_dead_letter(letter))  # JSON escapes control characters
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("worker", help="run the Faust session processor (clicks -> Redis)",
                       description="Consume the clicks topic and keep each session's recent items, item popularity "
                       "and co-occurrence counts in Redis. Bad events go to the dead-letter topic. Stop with Ctrl-C.")
    p.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--dry-run", nargs="?", const="count", choices=DRY_RUNS, metavar="LAYER",
                   help="consume and count events without writing sessions, to time one layer: count (the default) "
                   "is Faust alone, parse adds the worker's validation and batch plan, aiokafka is a bare aiokafka "
                   "consumer without Faust (bench ingest --layers times all of them)")
    p.set_defaults(func=_worker)

    p = sub.add_parser("publish", help="publish click events to Kafka",
                       description="Send events from a JSONL file, stdin (--file -), or a MovieLens replay. "
                       "Uses acks=all, the idempotent producer and compression; the key is session_id.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", metavar="PATH", help="JSONL file of events, or - for stdin")
    src.add_argument("--dataset", choices=MOVIELENS, help="replay a MovieLens dataset as clicks in time order")
    p.add_argument("--rate", type=float, default=0.0, help="events per second (default: as fast as possible)")
    p.add_argument("--limit", type=int, default=None, help="publish at most this many events")
    p.add_argument("--session-gap", type=int, default=3600, metavar="S",
                   help="replay: a gap longer than S seconds starts a new session (default 3600)")
    p.add_argument("--no-validate", action="store_true",
                   help="send lines as they are, even invalid ones (the worker dead-letters them)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_publish)

    p = sub.add_parser("sessions", help="read live sessions from Redis",
                       description="Show sessions as the worker keeps them in Redis: items, event types, times.")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    sp = ssub.add_parser("show", help="show the given sessions")
    sp.add_argument("session_ids", nargs="+", metavar="SESSION_ID")
    sp.add_argument("--json", action="store_true")
    sp = ssub.add_parser("list", help="list some live sessions with their latest items")
    sp.add_argument("--limit", type=int, default=10)
    sp.add_argument("--json", action="store_true")
    p.set_defaults(func=_sessions)

    p = sub.add_parser("stats", help="counters the worker keeps, and its consumer lag",
                       description="Events applied, live sessions, the most popular items (time-decayed and all "
                       "time) and the worker group's consumer lag on the clicks topic.")
    p.add_argument("--top", type=int, default=5, help="how many popular items (default 5)")
    p.add_argument("--wait-lag", type=float, default=0.0, metavar="S",
                   help="first wait up to S seconds for the consumer lag to reach zero")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_stats)

    p = sub.add_parser("dlq", help="show the latest dead letters",
                       description="Read the last N messages of the dead-letter topic, with the reason for each.")
    p.add_argument("-n", type=int, default=20, help="how many (default 20)")
    p.add_argument("--json", action="store_true", help="print each dead letter as JSON")
    p.set_defaults(func=_dlq)
