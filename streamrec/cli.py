"""The ``streamrec`` command line. Prints for people; the work is done by the library."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from streamrec.errors import StreamrecError
from streamrec.settings import Settings

__all__ = ["main"]

DATASETS = ("ml-1m", "ml-100k")


def _infra(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.infra import infra_down, infra_status, infra_up

    action = {"up": infra_up, "down": infra_down, "status": infra_status}[args.action]
    statuses = action(settings)
    if args.json:
        print(json.dumps([asdict(s) for s in statuses], indent=2))
    else:
        verb = {"up": "started", "down": "stopped", "status": ""}[args.action]
        for s in statuses:
            state = "healthy" if s.healthy else "down"
            note = f" ({verb})" if s.changed else (" (already running)" if args.action == "up" else "")
            owner = f"pid {s.pid}" if s.pid else "not started by streamrec"
            print(f"{s.name:6} {s.address:28} {state:8} {owner}{note}  log: {s.log}")
    return 0 if args.action == "down" or all(s.healthy for s in statuses) else 1


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
    from streamrec.stream.inspect import consumer_lag, stats

    if args.wait_lag:
        deadline = time.monotonic() + args.wait_lag
        while sum(consumer_lag(settings).values()) and time.monotonic() < deadline:
            time.sleep(0.5)
    result = {**asyncio.run(stats(settings, args.top)), "consumer_lag": sum(consumer_lag(settings).values())}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"events applied     {result['events_applied']:,}")
    print(f"live sessions      {result['live_sessions']:,}")
    print(f"consumer lag       {result['consumer_lag']:,}")
    print("popular now        " + "; ".join(result["popular_now"]))
    print("popular all time   " + "; ".join(f"{item} ({n})" for item, n in result["popular_all_time"]))
    return 0


def _dlq(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.stream.inspect import tail_dead_letters

    for letter in tail_dead_letters(settings, args.n):
        print(json.dumps(letter) if args.json else
              f"{letter['reason']:18} {letter['detail'][:70]:70} @{letter['source']['partition']}:{letter['source']['offset']}")
    return 0


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.bench.ingest import IngestBenchConfig, run_ingest_bench

    config = IngestBenchConfig(events=args.events, fresh_rate=args.rate, fresh_seconds=args.fresh_seconds,
                               source=args.source, keep=args.keep, faust_ceiling=not args.no_ceiling,
                               workers=args.workers)
    result = run_ingest_bench(settings, config)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _bench_models(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.bench.models import ModelBenchConfig, bench_models, format_rows
    from streamrec.errors import ConfigError
    from streamrec.export import DEFAULT_REGISTRY

    registry = Path(args.registry) if args.registry else DEFAULT_REGISTRY
    config = ModelBenchConfig(batch_sizes=tuple(args.batch), seq_len=args.seq_len, runs=args.runs,
                              warmup=args.warmup, intra_op_threads=args.threads)
    rows = bench_models(registry, config) if registry.is_dir() else []
    if not rows:
        raise ConfigError(f"no model with a CURRENT version under {registry}; run `streamrec train` first")
    if args.pipeline:
        rows.append(_bench_pipeline_row(registry, config, settings))
    print(f"onnxruntime CPU, {args.threads} intra-op thread(s), {args.runs} runs after {args.warmup} warm-up")
    print(format_rows(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


def _bench_pipeline_row(registry: Path, config: object, settings: Settings) -> dict[str, object]:
    from streamrec.bench.models import bench_pipeline
    from streamrec.data.movielens import load
    from streamrec.eval.protocols import protocol_from_summary, split
    from streamrec.export import load_ranker
    from streamrec.offline.assemble import RANKER_NAME, load_pipeline

    manifest = load_ranker(registry / RANKER_NAME).manifest
    parts = split(load(manifest["dataset"], settings.data_dir), protocol_from_summary(manifest["protocol"]))
    return bench_pipeline(load_pipeline(parts, registry), config)  # type: ignore[arg-type]


def _train_ranker(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.offline.assemble import DEFAULT_SOURCES, PipelineSpec
    from streamrec.offline.ranker_job import RankerJob, format_report, plot_report, run_ranker_job
    from streamrec.offline.ranker_fit import RankerConfig

    sources = tuple(dict.fromkeys(n.strip() for n in args.sources.split(",") if n.strip())) or DEFAULT_SOURCES
    spec = PipelineSpec(sources=sources, n_per_source=args.n, registry=Path(args.registry) if args.registry else None,
                        ranker=RankerConfig(loss=args.loss, epochs=args.epochs, seed=args.seed))
    job = RankerJob(dataset=args.dataset, protocol=args.protocol, data_dir=settings.data_dir, spec=spec,
                    ablation=not args.no_ablation, publish=not args.no_publish)
    done = run_ranker_job(job, progress=not args.quiet)
    print(format_report(done.described, done.result))
    if done.version_dir is not None:
        print(f"published {done.version_dir} (CURRENT); pipeline test NDCG@10 with the ONNX ranker "
              f"{done.onnx_test['NDCG@10']:.4f}")
    json_path = Path(args.json) if args.json else settings.home / "eval" / f"pipeline-{args.dataset}-{args.protocol}.json"
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(done.report, indent=2, default=str) + "\n")
    plot = plot_report(done.result, json_path.with_suffix(".png"), done.described)
    print(f"wrote {json_path} and {plot}")
    return 0


def _bench_peer(args: argparse.Namespace, settings: Settings) -> int:
    import torch

    from streamrec.bench.peer import PeerBenchConfig, format_table, run_peer_bench

    sides = ("peer", "ours") if args.only is None else (args.only,)
    config = PeerBenchConfig(dataset=args.dataset, max_len=args.max_len, budget_min=args.budget_min,
                             threads=args.threads or torch.get_num_threads(), seed=args.seed,
                             peer_batch_size=args.peer_batch, sides=sides, python=args.python,
                             progress=not args.quiet)
    report = run_peer_bench(config, settings.data_dir, settings.cache_dir, say=print)
    print()
    print(format_table(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.train.jobs import REPORTED, TrainJob, run_train_job

    job = TrainJob(models=tuple(n.strip() for n in args.models.split(",") if n.strip()), dataset=args.dataset,
                   protocol=args.protocol, data_dir=settings.data_dir, publish=not args.no_publish,
                   registry=Path(args.registry) if args.registry else None, curves_dir=settings.home / "train",
                   max_len=args.max_len, batch_size=args.batch_size, lr=args.lr, epochs=args.epochs,
                   patience=args.patience, budget_min=args.budget_min, seed=args.seed, device=args.device,
                   progress=not args.quiet)
    result = run_train_job(job, say=print)
    print(f"\n{result.described}: test metrics of each model's best epoch")
    print(f"{'model':10} {'best':>4} {'epochs':>6} {'stopped':8} {'train s':>7} "
          + " ".join(f"{k:>8}" for k in REPORTED) + f" {'ONNX ' + REPORTED[0]:>13}")
    for run in result.runs:
        onnx = f"{run.onnx_test[REPORTED[0]]:13.4f}" if run.onnx_test else f"{'-':>13}"
        print(f"{run.name:10} {run.result.best_epoch:4d} {len(run.result.history):6d} {run.result.stopped:8} "
              f"{run.train_s:7.0f} " + " ".join(f"{run.test[k]:8.4f}" for k in REPORTED) + f" {onnx}")
    for run in result.runs:
        where = f"published {run.version_dir} (CURRENT); " if run.version_dir else ""
        print(f"{run.name}: {where}curves in {run.curves}")
    return 0


def _settings(args: argparse.Namespace, settings: Settings) -> int:
    for key, value in sorted(settings.to_env(redact=True).items()):
        print(f"{key}={value}")
    return 0


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    import textwrap

    from tqdm import tqdm

    from streamrec.data.movielens import load
    from streamrec.errors import ConfigError
    from streamrec.eval import report
    from streamrec.eval.evaluate import fit_and_evaluate
    from streamrec.eval.protocols import DEFAULT_TEST_DAYS, LeaveOneOut, SessionSplit, split
    from streamrec.eval.factory import create

    names = list(dict.fromkeys(n.strip() for n in args.models.split(",") if n.strip()))
    if not names or (args.limit_cases is not None and args.limit_cases < 1):
        raise ConfigError("--models needs at least one name and --limit-cases a positive number")
    models = [create(name) for name in names]  # fail on a bad name before loading anything
    protocol: LeaveOneOut | SessionSplit
    if args.protocol == "loo":
        if args.gap is not None or args.test_days is not None:
            raise ConfigError("--gap and --test-days apply to --protocol session only")
        protocol = LeaveOneOut()
    else:
        days = DEFAULT_TEST_DAYS[args.dataset] if args.test_days is None else args.test_days
        protocol = SessionSplit(gap_s=3600 if args.gap is None else args.gap, test_days=days, validation_days=days)
    parts = split(load(args.dataset, settings.data_dir), protocol)
    summary = {**parts.summary, "limit_cases": args.limit_cases}
    sizes = [f"{k} {v:,}" for k, v in summary.items() if isinstance(v, int) and not isinstance(v, bool)]
    print(textwrap.fill("split: " + ", ".join(sizes), 120, subsequent_indent="  "))
    results = {}
    for name, model in tqdm(list(zip(names, models, strict=True)), desc="models", unit=" model", leave=False,
                            disable=True if args.quiet else None):
        results[name] = fit_and_evaluate(model, parts, part=args.split, limit_cases=args.limit_cases,
                                         progress=not args.quiet)
    n_cases = int(next(iter(results.values()))["cases"])
    heading = report.title(args.dataset, summary, args.split, n_cases)
    print(report.format_table(heading, results, protocol.name))
    default_json = settings.home / "eval" / f"{args.dataset}-{args.protocol}-{args.split}.json"
    json_path = Path(args.json) if args.json else default_json
    plot_path = Path(args.plot) if args.plot else json_path.with_suffix(".png")
    report.write_json(json_path, report.to_json(args.dataset, args.split, protocol.name, summary, results))
    report.plot(plot_path, heading, results, protocol.name)
    print(f"wrote {json_path} and {plot_path}")
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.serve.server import serve_processes

    if args.port is not None:
        settings = settings.replace(grpc_port=args.port)
    if args.registry:
        settings = settings.replace(registry=Path(args.registry))
    logging.getLogger("streamrec").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    serve_processes(settings, args.processes)
    return 0


def _recommend(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.serve.client import ClientTLS, dataset_of, format_response, open_channel, recommend, titles_of

    target = args.target or f"{settings.grpc_host}:{settings.grpc_port}"
    tls = ClientTLS(*(Path(p) if p else None for p in (args.ca, args.cert, args.key)))
    with open_channel(target, tls) as channel:
        response = recommend(channel, args.session, args.k, exclude=tuple(args.exclude), timeout_s=args.timeout)
    dataset = args.dataset or dataset_of(settings.registry) or "ml-1m"
    print(format_response(args.session, response, titles_of(dataset, settings.data_dir)))
    return 0


def _live(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.demo.run import LiveConfig, plan_live, run_live
    from streamrec.demo.view import LiveView, format_summary
    from streamrec.serve.client import ClientTLS

    if args.registry:
        settings = settings.replace(registry=Path(args.registry))
    config = LiveConfig(target=args.target or f"{settings.grpc_host}:{settings.grpc_port}", sessions=args.sessions,
                        rate=args.rate, k=args.k, dataset=args.dataset, seed=args.seed, max_clicks=args.max_clicks,
                        wait_server_s=args.wait_server,
                        tls=ClientTLS(*(Path(p) if p else None for p in (args.ca, args.cert, args.key))))
    plan = plan_live(settings, config)
    clicks = sum(len(s.items) - 1 for s in plan.sessions)
    note = (f"{len(plan.sessions)} test session(s) of {plan.dataset}, {clicks} click(s) to predict; {plan.protocol}"
            + ("" if plan.held_out else "; the ranker was not fitted on this split, so it may have seen these clicks"))
    with LiveView(plan.titles, note, quiet=args.json) as view:
        summary = run_live(settings, config, plan, view.update)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def _bench_serve(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.bench.serve import ServeBenchConfig, format_result, run_serve_bench

    target = args.target or f"{settings.grpc_host}:{settings.grpc_port}"
    config = ServeBenchConfig(target=target, rate=args.rate, seconds=args.seconds, concurrency=args.concurrency,
                              sessions=args.sessions, k=args.k, dataset=args.dataset, load_sessions=not args.no_load,
                              channels=args.channels)
    result = run_serve_bench(settings, config)
    print(format_result(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _archive(args: argparse.Namespace, settings: Settings) -> int:
    import signal
    import threading

    from streamrec.archive import ArchiveConfig, ArchiveReport, WriteResult, run_archiver

    idle_s = 0.0 if args.once else args.until_idle
    config = ArchiveConfig.from_settings(settings, root=Path(args.dir) if args.dir else None, idle_s=idle_s)
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
    from streamrec.archive import ArchiveWriter, seed_from_dataset
    from streamrec.stream.processor import limits_from

    root = Path(args.dir) if args.dir else settings.archive_dir
    with ArchiveWriter(root, max_ids=settings.archive_dedup_ids) as writer:
        report = seed_from_dataset(args.dataset, settings.data_dir, writer, limit=args.limit,
                                   session_gap_s=args.session_gap, limits=limits_from(settings),
                                   progress=not args.quiet)
    result = report.result
    print(f"seeded {root} from {args.dataset}: {result.written:,} of {report.events:,} event(s) written in "
          f"{len(result.files)} file(s); {result.duplicates:,} already archived, {len(report.invalid)} invalid")
    return 0


def _archive_stats(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.archive import archive_stats

    root = Path(args.dir) if args.dir else settings.archive_dir
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


def _add_archive_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    def where(default: object) -> argparse.ArgumentParser:
        # Each (sub)command has its own --dir; the subcommands' leave an earlier one in place.
        parent = argparse.ArgumentParser(add_help=False)
        parent.add_argument("--dir", metavar="DIR", default=default,
                            help="the archive (default STREAMREC_ARCHIVE_DIR, $STREAMREC_HOME/archive)")
        return parent

    p = sub.add_parser("archive", parents=[where(None)],
                       help="archive the clicks topic as Parquet by event date (the trainer's input)",
                       description="Consume the clicks topic in a consumer group of its own (STREAMREC_ARCHIVE_GROUP_ID, "
                       "default <app id>-archive) and append its events to DIR/date=YYYY-MM-DD/*.parquet. A flush "
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
    sp = asub.add_parser("seed", parents=[where(argparse.SUPPRESS)], help="fill the archive from a MovieLens replay, without Kafka",
                         description="Archive a MovieLens dataset as the click events `streamrec publish --dataset` "
                         "would send (same event ids and sessions). Events already archived are skipped, so seeding "
                         "twice, or seeding and archiving a published replay, stores each event once.")
    sp.add_argument("--dataset", choices=DATASETS, required=True)
    sp.add_argument("--limit", type=int, default=None, help="the first N events of the replay only")
    sp.add_argument("--session-gap", type=int, default=3600, metavar="S",
                    help="a gap longer than S seconds starts a new session (default 3600, as publish)")
    sp.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    sp.set_defaults(func=_archive_seed)
    sp = asub.add_parser("stats", parents=[where(argparse.SUPPRESS)], help="dates, files, events, distinct sessions and items",
                         description="Summarise the archive: its dates, files and events (from Parquet footers) and "
                         "the distinct sessions, items and users (reads those columns).")
    sp.add_argument("--dates", action="store_true", help="also a line per date")
    sp.add_argument("--json", action="store_true")
    sp.set_defaults(func=_archive_stats)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamrec", description="Streaming, real-time, session-based recommendations. "
        "Settings come from STREAMREC_* environment variables (see `streamrec settings`).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("infra", help="start, stop or check the local Kafka broker and Redis",
                       description="Manage a real Kafka 4.x broker (KRaft) and redis-server on loopback. "
                       "`up` is idempotent and waits until both answer; `down` stops only what `up` started.")
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--json", action="store_true", help="print machine-readable status")
    p.set_defaults(func=_infra)

    p = sub.add_parser("worker", help="run the Faust session processor (clicks -> Redis)",
                       description="Consume the clicks topic and keep each session's recent items, item popularity "
                       "and co-occurrence counts in Redis. Bad events go to the dead-letter topic. Stop with Ctrl-C.")
    p.add_argument("--loglevel", default="info", choices=("debug", "info", "warning", "error"))
    p.add_argument("--dry-run", action="store_true",
                   help="consume and count events without writing sessions (measures Faust's own ceiling)")
    p.set_defaults(func=_worker)

    p = sub.add_parser("publish", help="publish click events to Kafka",
                       description="Send events from a JSONL file, stdin (--file -), or a MovieLens replay. "
                       "Uses acks=all, the idempotent producer and compression; the key is session_id.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--file", metavar="PATH", help="JSONL file of events, or - for stdin")
    src.add_argument("--dataset", choices=DATASETS, help="replay a MovieLens dataset as clicks in time order")
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

    _add_archive_parser(sub)

    p = sub.add_parser("bench", help="benchmarks that print figures and can write them as JSON")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    bp = bsub.add_parser("ingest", help="end-to-end ingest: Kafka -> worker(s) -> Redis",
                         description="Throughput: pre-publish N events, start the worker(s), time how fast they reach "
                         "Redis. Freshness: publish at a fixed rate and time each event from publish until visible "
                         "in Redis (keyspace notifications). Runs on its own topic and key prefix, then cleans up.")
    bp.add_argument("--events", type=int, default=200_000, help="events for the throughput phase (default 200000)")
    bp.add_argument("--rate", type=float, default=5000.0, help="offered rate of the freshness phase (default 5000/s)")
    bp.add_argument("--fresh-seconds", type=float, default=20.0, help="length of the freshness phase (default 20)")
    bp.add_argument("--source", choices=("ml-1m", "synthetic"), default="ml-1m",
                    help="events for the throughput phase: a MovieLens-1M replay or synthetic sessions")
    bp.add_argument("--workers", type=int, default=1,
                    help="worker processes, at most the topic's partitions (default 1); with more than one, "
                    "throughput is timed once their group is stable")
    bp.add_argument("--keep", action="store_true", help="keep the bench topics and Redis keys")
    bp.add_argument("--no-ceiling", action="store_true",
                    help="skip the extra phase that measures a dry-run worker (Faust alone) on the same events")
    bp.add_argument("--json", metavar="PATH", help="also write the figures as flat JSON")
    p.set_defaults(func=_bench)
    bp = bsub.add_parser("models", help="onnxruntime latency of each CURRENT model in the registry",
                         description="Load every model whose CURRENT points at an exported version, and time "
                         "onnxruntime inference (CPU) on random sequences: p50/p99 per batch size after warm-up.")
    bp.add_argument("--registry", metavar="DIR", help="model registry (default <repo>/models)")
    bp.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="batch sizes (default 1 32)")
    bp.add_argument("--seq-len", type=int, default=50, help="sequence length (default 50)")
    bp.add_argument("--runs", type=int, default=200, help="timed runs per batch size (default 200)")
    bp.add_argument("--warmup", type=int, default=20, help="untimed runs first (default 20)")
    bp.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    bp.add_argument("--pipeline", action="store_true",
                    help="also time the whole ranking pipeline for one in-memory session (needs a CURRENT deepfm; "
                    "fits the non-neural generators on the ranker's split first)")
    bp.add_argument("--json", metavar="PATH", help="also write the figures as flat JSON")
    bp.set_defaults(func=_bench_models)
    bp = bsub.add_parser("peer", help="our SASRec and RecBole's, same split, same wall-clock budget",
                         description="Train RecBole 1.2.1's SASRec (in its own venv under .cache/peer-recbole/, "
                         "created on first use) and ours on the identical leave-one-out split, one after the "
                         "other, each for the same wall-clock budget and torch threads; test both on the full "
                         "catalogue with the history excluded and print one table.")
    bp.add_argument("--dataset", choices=DATASETS, default="ml-1m", help="default ml-1m")
    bp.add_argument("--budget-min", type=float, default=10.0, metavar="M",
                    help="wall-clock training minutes per side, validation included (default 10)")
    bp.add_argument("--max-len", type=int, default=50, metavar="L", help="sequence length, both sides (default 50)")
    bp.add_argument("--threads", type=int, default=None, metavar="N",
                    help="torch intra-op threads, both sides (default: torch's default here)")
    bp.add_argument("--peer-batch", type=int, default=512, metavar="B",
                    help="RecBole's training batch in prefixes (default 512; ours keeps streamrec's batch of "
                    "user sequences)")
    bp.add_argument("--only", choices=("ours", "peer"), default=None, help="run one side only (default both)")
    bp.add_argument("--python", default="python3", metavar="EXE",
                    help="interpreter that creates the peer's venv, Python 3.8 to 3.11 (default python3)")
    bp.add_argument("--seed", type=int, default=0, help="seed of both sides (default 0)")
    bp.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    bp.set_defaults(func=_bench_peer)

    bp = bsub.add_parser("serve", help="gRPC Recommend latency and throughput of the running server",
                         description="Store real sessions (test users' histories of the served dataset) in Redis under "
                         "the server's prefix, then call Recommend over loopback from an asyncio load generator: at a "
                         "fixed rate (open loop), and at saturation (closed loop, --concurrency in flight). Prints "
                         "qps, p50_ms, p90_ms, p99_ms and errors of each phase.")
    bp.add_argument("--target", metavar="HOST:PORT", help="server (default STREAMREC_GRPC_HOST:STREAMREC_GRPC_PORT)")
    bp.add_argument("--rate", type=float, default=500.0, help="fixed-rate phase, requests/s (default 500)")
    bp.add_argument("--seconds", type=float, default=20.0, help="length of each phase (default 20)")
    bp.add_argument("--concurrency", type=int, default=32, help="requests in flight at saturation (default 32)")
    bp.add_argument("--sessions", type=int, default=2000, help="sessions stored in Redis (default 2000)")
    bp.add_argument("--k", type=int, default=10)
    bp.add_argument("--dataset", choices=DATASETS, default="ml-1m", help="sessions come from it (default ml-1m)")
    bp.add_argument("--no-load", action="store_true", help="sessions are already in Redis (bench:sess-N)")
    bp.add_argument("--channels", type=int, default=4,
                    help="connections, used in turn (a server of several processes shares out connections; default 4)")
    bp.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bp.set_defaults(func=_bench_serve)

    p = sub.add_parser("evaluate", help="fit baseline models and evaluate them offline on MovieLens",
                       description="Split a MovieLens log with protocol A (loo: leave-one-out per user, history "
                       "excluded) or B (session: sessions at inactivity gaps, last days as test, every next item "
                       "predicted), fit each model on the training part, rank the full catalogue for every case, "
                       "and print a table; also writes JSON and a PNG bar chart.")
    p.add_argument("--dataset", choices=DATASETS, default="ml-1m", help="default ml-1m")
    p.add_argument("--protocol", choices=("loo", "session"), default="loo", help="default loo")
    p.add_argument("--models", required=True, metavar="NAMES",
                   help="comma-separated: random, pop, itemknn, sknn, vsknn, mf, content, sasrec, gru4rec, bert4rec "
                   "(fixed epochs; `streamrec train` early-stops them), pipeline (neural sources from the registry)")
    p.add_argument("--split", choices=("validation", "test"), default="test", help="which cases (default test)")
    p.add_argument("--gap", type=int, default=None, metavar="S",
                   help="session: a pause longer than S seconds starts a new session (default 3600)")
    p.add_argument("--test-days", type=float, default=None, metavar="D",
                   help="session: the last D days are the test period, the D before them validation "
                   "(default 90 for ml-1m, 30 for ml-100k)")
    p.add_argument("--json", metavar="PATH", help="where to write the results (default $STREAMREC_HOME/eval/...)")
    p.add_argument("--plot", metavar="PATH", help="where to write the bar chart (default: the JSON path, .png)")
    p.add_argument("--limit-cases", type=int, default=None, metavar="N",
                   help="evaluate a seeded random sample of N cases (quick runs)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("train", help="train torch sequence models, evaluate them and export them as ONNX",
                       description="Split a MovieLens log with a protocol and, for each model in turn, train it with "
                       "early stopping on validation NDCG@10 (within a time budget if given), keep its best epoch, "
                       "report that epoch's test metrics, and publish model.onnx, manifest.json (with the training "
                       "history), vocab.json and curves.png (loss and validation NDCG@10 per epoch) as a new CURRENT "
                       "version in the registry; the published ONNX model is tested again. Runs on CUDA when "
                       "available. Defaults per model: --max-len 200 for sasrec and bert4rec (their ML-1M setting), "
                       "50 for gru4rec; --batch-size 128 for sasrec and bert4rec, 64 for gru4rec; --lr 2e-3 for "
                       "sasrec and gru4rec, 1e-3 for bert4rec.")
    p.add_argument("--models", default="sasrec", metavar="NAMES",
                   help="comma-separated, trained in turn: sasrec, gru4rec, bert4rec (default sasrec)")
    p.add_argument("--dataset", choices=DATASETS, default="ml-1m", help="default ml-1m")
    p.add_argument("--protocol", choices=("loo", "session"), default="loo",
                   help="loo: leave-one-out per user (the SASRec and BERT4Rec literature); session: sessions cut at "
                   "one-hour gaps, the last days as validation and test (the GRU4Rec literature) (default loo)")
    p.add_argument("--budget-min", type=float, default=None, metavar="M",
                   help="wall-clock minutes of training and validation per model (default: no limit)")
    p.add_argument("--epochs", type=int, default=200, metavar="N", help="at most N epochs per model (default 200)")
    p.add_argument("--patience", type=int, default=10, metavar="N",
                   help="stop after N epochs without a better validation NDCG@10 (default 10)")
    p.add_argument("--max-len", type=int, default=None, metavar="L",
                   help="the longest history a model reads (default per model: 200 for sasrec and bert4rec, "
                   "50 for gru4rec)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="mini-batch: sequences, or GRU4Rec's parallel sessions (default per model: 128, gru4rec 64)")
    p.add_argument("--lr", type=float, default=None, metavar="LR",
                   help="learning rate (default per model: 2e-3, bert4rec 1e-3)")
    p.add_argument("--device", default=None, metavar="DEV",
                   help="torch device, e.g. cpu, cuda or cuda:1 (default: cuda when available, else cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, batches, dropout and negatives (default 0)")
    p.add_argument("--registry", metavar="DIR", help="model registry (default <repo>/models)")
    p.add_argument("--no-publish", action="store_true",
                   help="train and test only: publish nothing, write the curves to $STREAMREC_HOME/train/")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)

    p = sub.add_parser("train-ranker", help="train the DeepFM ranker, compare the pipeline with its members, publish",
                       description="Fit or load every candidate generator for a split (neural ones from the registry, "
                       "trained on the same split by `streamrec train`), build candidate lists on the validation part, "
                       "train the DeepFM ranker there, and report test metrics of each generator, the pipeline, plain "
                       "score fusion and the pipeline without each source, plus the candidates' recall at N = 50, 100 "
                       "and 200. Publishes the ranker as a new CURRENT `deepfm` version; writes JSON and a PNG.")
    p.add_argument("--dataset", choices=DATASETS, default="ml-1m", help="default ml-1m")
    p.add_argument("--protocol", choices=("loo", "session"), default="loo", help="default loo")
    p.add_argument("--sources", default="", metavar="NAMES",
                   help="comma-separated generators (default sasrec,gru4rec,bert4rec,itemknn,vsknn,mf,content,pop)")
    p.add_argument("--n", type=int, default=50, metavar="N", help="candidates per source (default 50)")
    p.add_argument("--loss", choices=("listwise", "bce"), default="listwise", help="ranker loss (default listwise)")
    p.add_argument("--epochs", type=int, default=40, metavar="E", help="ranker epochs at most (default 40)")
    p.add_argument("--registry", metavar="DIR", help="model registry (default <repo>/models)")
    p.add_argument("--no-ablation", action="store_true", help="only the full pipeline (no fusion or drop-one runs)")
    p.add_argument("--no-publish", action="store_true", help="do not publish the ranker")
    p.add_argument("--json", metavar="PATH", help="report path (default $STREAMREC_HOME/eval/pipeline-DATASET-PROTOCOL.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train_ranker)

    p = sub.add_parser("serve", help="run the gRPC recommendation server (streamrec.v1.Recommender)",
                       description="Serve Recommend, RecommendForSequence and SimilarItems over grpc.aio, with the "
                       "gRPC health and reflection services and Prometheus metrics (STREAMREC_METRICS_PORT). Loads the "
                       "CURRENT deepfm pipeline of the registry and swaps in new versions after checking them; reads "
                       "sessions from Redis. TLS via STREAMREC_TLS_CERT/_KEY (+ _CLIENT_CA for mTLS). Stop with Ctrl-C.")
    p.add_argument("--port", type=int, default=None, help="gRPC port (default STREAMREC_GRPC_PORT, 50051)")
    p.add_argument("--registry", metavar="DIR", help="model registry (default STREAMREC_REGISTRY, ./models)")
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="server processes sharing the port (SO_REUSEPORT), to use N cores (default 1)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("recommend", help="ask the running server for a session's recommendations",
                       description="Call Recommend for a session kept in Redis and print the items with their titles.")
    p.add_argument("--session", required=True, metavar="ID", help="session id")
    p.add_argument("--k", type=int, default=10, help="how many (default 10)")
    p.add_argument("--exclude", nargs="*", default=[], metavar="ITEM", help="item ids never to recommend")
    p.add_argument("--target", metavar="HOST:PORT", help="server (default STREAMREC_GRPC_HOST:STREAMREC_GRPC_PORT)")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="where titles come from (default: the registry's CURRENT ranker's dataset)")
    p.add_argument("--timeout", type=float, default=2.0, metavar="S", help="deadline in seconds (default 2)")
    p.add_argument("--ca", metavar="PEM", help="CA of the server's certificate (enables TLS)")
    p.add_argument("--cert", metavar="PEM", help="client certificate (mTLS)")
    p.add_argument("--key", metavar="PEM", help="client key (mTLS)")
    p.set_defaults(func=_recommend)

    p = sub.add_parser("live", help="replay held-out test sessions through the stack and score each answer live",
                       description="Pick test sessions of the session protocol (the last days of MovieLens, which "
                       "the models were not fitted on when the ranker used that protocol), publish their clicks one by "
                       "one to Kafka, wait until the worker has put each in Redis, ask the running server for the "
                       "top k, and check whether the session's next click is in it. Shows the latest sessions with "
                       "titles, the running HR@k and the latency (a table on a terminal, one line per click "
                       "otherwise). Needs `streamrec worker` and `streamrec serve` running.")
    p.add_argument("--sessions", type=int, default=20, metavar="N", help="test sessions to replay (default 20)")
    p.add_argument("--rate", type=float, default=5.0, metavar="CLICKS_PER_S",
                   help="pace of the clicks over all sessions (default 5; 0 = as fast as the stack answers)")
    p.add_argument("--k", type=int, default=10, help="size of the answer a next click must be in (default 10)")
    p.add_argument("--max-clicks", type=int, default=20, metavar="N",
                   help="replay at most this many clicks of a session (default 20)")
    p.add_argument("--seed", type=int, default=0, help="which sessions are drawn (default 0)")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help="where sessions come from (default: the registry's CURRENT ranker's dataset)")
    p.add_argument("--registry", metavar="DIR", help="registry whose ranker names the dataset and split "
                   "(default STREAMREC_REGISTRY, ./models)")
    p.add_argument("--target", metavar="HOST:PORT", help="server (default STREAMREC_GRPC_HOST:STREAMREC_GRPC_PORT)")
    p.add_argument("--wait-server", type=float, default=180.0, metavar="S",
                   help="how long to wait for the server to load its pipeline (default 180)")
    p.add_argument("--json", action="store_true", help="no live view; print the summary as JSON")
    p.add_argument("--ca", metavar="PEM", help="CA of the server's certificate (enables TLS)")
    p.add_argument("--cert", metavar="PEM", help="client certificate (mTLS)")
    p.add_argument("--key", metavar="PEM", help="client key (mTLS)")
    p.set_defaults(func=_live)

    from streamrec.retrain.commands import add_parsers as add_retrain_parsers
    from streamrec.serve.health_probe import add_parser as add_health_parser

    add_retrain_parsers(sub)
    add_health_parser(sub)

    p = sub.add_parser("settings", help="print the effective settings as STREAMREC_* variables (secrets masked)")
    p.set_defaults(func=_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        return int(args.func(args, settings))
    except StreamrecError as exc:
        print(f"streamrec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
