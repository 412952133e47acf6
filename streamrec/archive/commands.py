"""``streamrec archive`` (and its ``seed`` and ``stats``): the clicks topic as Parquet. Parsing and printing only."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamrec.data.names import MOVIELENS
from streamrec.settings import Settings

__all__ = ["register"]


def _root(args: argparse.Namespace, settings: Settings) -> Path:
    return Path(args.dir) if args.dir else settings.archive_dir


def _archive(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from streamrec.archive.consumer import ArchiveConfig, ArchiveReport, run_archiver
    from streamrec.archive.writer import WriteResult

    idle_s = 0.0 if args.once else args.until_idle
    config = ArchiveConfig.from_settings(settings, root=_root(args, settings), idle_s=idle_s)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())

    def progress(report: ArchiveReport, flushed: WriteResult) -> None:
        if not args.quiet:
            print(f"flush {report.flushes}: +{flushed.written} event(s) in {len(flushed.files)} file(s), "
                  f"{flushed.duplicates} duplicate(s) dropped; {report.written:,} archived so far", flush=True)

    print(f"archiving {config.topic} (group {config.group_id}) to {config.root}; "
          + ("stops when caught up" if idle_s is not None else "Ctrl-C to stop"), flush=True)
    report = run_archiver(settings, config, stop=stop, on_flush=progress)
    malformed = ", ".join(f"{reason} {n}" for reason, n in report.malformed.most_common()) or "none"
    print(f"archived {report.written:,} event(s) of {report.records:,} record(s) in {report.files} file(s) "
          f"({report.seconds:.1f}s); duplicates dropped {report.duplicates:,}; malformed skipped: {malformed}"
          + (f"; {report.failed_commits} commit(s) failed (redelivery is harmless)" if report.failed_commits else ""))
    return 0


def _archive_seed(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.archive.seed import seed_from_dataset
    from streamrec.archive.writer import ArchiveWriter
    from streamrec.stream.processor import limits_from

    root = _root(args, settings)
    with ArchiveWriter(root, max_ids=settings.archive_dedup_ids) as writer:
        report = seed_from_dataset(args.dataset, settings.data_dir, writer, limit=args.limit,
                                   session_gap_s=args.session_gap, limits=limits_from(settings),
                                   progress=not args.quiet)
    result = report.result
    print(f"seeded {root} from {args.dataset}: {result.written:,} of {report.events:,} event(s) written in "
          f"{len(result.files)} file(s); {result.duplicates:,} already archived, {len(report.invalid)} invalid")
    return 0


def _archive_stats(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.archive.reader import archive_stats

    root = _root(args, settings)
    stats = archive_stats(root)
    if args.json:
        print(json.dumps({"root": str(root), "dates": len(stats.dates), "files": stats.files, "events": stats.events,
                          "bytes": stats.bytes, "sessions": stats.sessions, "items": stats.items,
                          "users": stats.users, "first_date": str(stats.dates[0].day) if stats.dates else None,
                          "last_date": str(stats.dates[-1].day) if stats.dates else None,
                          "per_date": [{"date": str(d.day), "files": d.files, "events": d.events, "bytes": d.bytes}
                                       for d in stats.dates] if args.dates else None}, indent=2))
        return 0
    if not stats.dates:
        print(f"{root}: empty archive")
        return 0
    if args.dates:
        for d in stats.dates:
            print(f"{d.day}  {d.files:6,} file(s)  {d.events:10,} event(s)  {d.bytes / 1e6:8.2f} MB")
    print(f"archive            {root}")
    print(f"dates              {len(stats.dates):,} ({stats.dates[0].day} .. {stats.dates[-1].day})")
    print(f"files              {stats.files:,} ({stats.bytes / 1e6:,.1f} MB)")
    print(f"events             {stats.events:,}")
    print(f"distinct sessions  {stats.sessions:,}")
    print(f"distinct items     {stats.items:,}")
    print(f"distinct users     {stats.users:,}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def where(default: object) -> argparse.ArgumentParser:
        # Each (sub)command has its own --dir; the subcommands' leave an earlier one in place.
        parent = argparse.ArgumentParser(add_help=False)
        parent.add_argument("--dir", metavar="DIR", default=default,
                            help="the archive (default STREAMREC_ARCHIVE_DIR, $STREAMREC_HOME/archive)")
        return parent

    p = sub.add_parser("archive", parents=[where(None)],
                       help="archive the clicks topic as Parquet by event date (the trainer's input)",
                       description="Consume the clicks topic in a consumer group of its own "
                       "(STREAMREC_ARCHIVE_GROUP_ID, default <app id>-archive) and append its events to "
                       "DIR/date=YYYY-MM-DD/*.parquet. A flush "
                       "(every STREAMREC_ARCHIVE_FLUSH_EVENTS records or STREAMREC_ARCHIVE_FLUSH_S seconds) makes its "
                       "files durable before committing their offsets; events already archived (same id, same date) "
                       "are dropped, so a crash or a resend never duplicates one; malformed records are counted and "
                       "skipped. Runs until Ctrl-C or SIGTERM, then flushes. `seed` and `stats` below.")
    stop = p.add_mutually_exclusive_group()
    stop.add_argument("--once", action="store_true", help="stop as soon as every partition is caught up")
    stop.add_argument("--until-idle", type=float, default=None, metavar="S",
                      help="stop once caught up and no record came for S seconds")
    p.add_argument("-q", "--quiet", action="store_true", help="no line per flush")
    p.set_defaults(func=_archive)
    asub = p.add_subparsers(dest="action", metavar="ACTION")
    sp = asub.add_parser("seed", parents=[where(argparse.SUPPRESS)],
                         help="fill the archive from a MovieLens replay, without Kafka",
                         description="Archive a MovieLens dataset as the click events `streamrec publish --dataset` "
                         "would send (same event ids and sessions). Events already archived are skipped, so seeding "
                         "twice, or seeding and archiving a published replay, stores each event once.")
    sp.add_argument("--dataset", choices=MOVIELENS, required=True)
    sp.add_argument("--limit", type=int, default=None, help="the first N events of the replay only")
    sp.add_argument("--session-gap", type=int, default=3600, metavar="S",
                    help="a gap longer than S seconds starts a new session (default 3600, as publish)")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=_archive_seed)
    sp = asub.add_parser("stats", parents=[where(argparse.SUPPRESS)],
                         help="dates, files, events, distinct sessions and items",
                         description="Summarise the archive: its dates, files and events (from Parquet footers) and "
                         "the distinct sessions, items and users (reads those columns).")
    sp.add_argument("--dates", action="store_true", help="also a line per date")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_archive_stats)
