"""The ``streamrec retrain`` and ``streamrec models`` commands: argument parsing and printing only."""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import threading
import time
from pathlib import Path

from streamrec.errors import ConfigError
from streamrec.registry import RANKER
from streamrec.settings import Settings, add_registry_option

__all__ = ["parse_every", "register"]

logger = logging.getLogger(__name__)
_EVERY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")


def parse_every(text: str) -> float:
    """``30m``, ``6h``, ``1d`` -> seconds."""
    match = _EVERY.match(text)
    if not match:
        raise ConfigError(f"--every takes a number and a unit (s, m, h or d), e.g. 6h; got {text!r}")
    return float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


def _notifier(settings: Settings):  # type: ignore[no-untyped-def]
    def notify() -> None:
        import redis

        try:
            client = redis.Redis.from_url(settings.redis_address, socket_timeout=2, socket_connect_timeout=2)
            receivers = client.publish(settings.models_channel, "promoted")
            print(f"notified {receivers} server(s) on {settings.models_channel} (the others poll the registry)")
        except redis.RedisError as exc:  # servers also poll the registry, so a lost notice only delays the swap
            print(f"could not notify the servers through Redis ({exc}); they will find the release by polling")
    return notify


def _retrain(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.retrain.gate import GateConfig
    from streamrec.retrain.job import RetrainConfig, run_retrain

    config = RetrainConfig(
        archive=Path(args.archive or settings.archive_dir), registry=settings.registry,
        data_dir=settings.data_dir, since_days=args.since_days, catalog=args.catalog,
        models=tuple(m for m in args.models.split(",") if m), sources=tuple(s for s in args.sources.split(",") if s),
        budget_s=args.budget_min * 60, max_len=args.max_len, ranker_epochs=args.ranker_epochs, test_days=args.test_days,
        gate=GateConfig(metric=args.metric, tolerance=args.tolerance), keep=args.keep, warm_start=args.warm_start,
        force=args.force,
        notify=_notifier(settings), seed=args.seed, progress=not args.quiet)
    every = parse_every(args.every) if args.every else None
    stop = threading.Event()
    if every is not None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
    while True:
        started = time.monotonic()
        result = run_retrain(config, say=print)
        summary = {"snapshot": result.snapshot, "events": result.events, "promoted": result.promoted,
                   "reason": result.decision.reason, "release": result.release, "new": result.new,
                   "current": result.current, "seconds": {k: round(v, 1) for k, v in result.seconds.items()},
                   "pruned": result.pruned}
        print(f"{'promoted' if result.promoted else 'rejected'} in {result.seconds['total']:.0f}s: "
              f"{result.decision.reason}")
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
        if every is None:
            return 0 if result.promoted or not args.fail_on_reject else 3
        wait = max(0.0, every - (time.monotonic() - started))
        print(f"next retrain in {wait / 3600:.2f} h (Ctrl-C to stop)")
        if stop.wait(wait):
            return 0


def _models(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.retrain.releases import list_versions, rollback

    registry = settings.registry
    if args.models_command == "rollback":
        release = rollback(registry, args.name)
        print(f"rolled {args.name} back; now current: " + ", ".join(f"{k} {v}" for k, v in release.items()))
        _notifier(settings)()
        return 0
    rows = [r for r in list_versions(registry) if not args.name or r.name == args.name]
    if args.json:
        print(json.dumps([r.__dict__ for r in rows], indent=2, default=dict))
        return 0
    if not rows:
        print(f"no versions under {registry}")
        return 0
    print(f"{'model':9} {'version':17} {'':3} {'status':9} {'NDCG@10':>8} {'HR@20':>7}  reason")
    for r in rows:
        print(f"{r.name:9} {r.version:17} {'*' if r.current else '':3} {r.status:9} "
              f"{r.metrics.get('NDCG@10', float('nan')):8.4f} {r.metrics.get('HR@20', float('nan')):7.4f}  "
              f"{r.reason[:90]}")
    print("* = CURRENT; metrics: the version's own test slice (see its manifest for the protocol)")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "retrain", help="retrain every model on the event archive, gate it against what serves, promote it",
        description="Read the event archive (optionally its newest days), freeze it as a snapshot, train the "
                    "sequence models and the ranker on it (protocol B: the newest --test-days held out), check the "
                    "new release like a server would, measure it and the current release on the same held-out "
                    "slice, and promote it (atomically, then notify the servers over Redis) only if it is not worse "
                    "than the current one by more than --tolerance. Otherwise it is kept as rejected, with the "
                    "reason in its manifests; so it is when the current release cannot be loaded, unless --force. "
                    "Old versions are pruned. With --every it repeats.")
    p.add_argument("--archive", metavar="DIR",
                   help="the event archive (default $STREAMREC_ARCHIVE_DIR, $STREAMREC_HOME/archive)")
    p.add_argument("--since-days", type=float, metavar="D", help="only the newest D days of the archive (default all)")
    p.add_argument("--catalog", metavar="SRC", help="item metadata: ml-1m, ml-100k or a .parquet/.csv file with "
                                                    "item_id, title, genres (default: none, titles are ids)")
    p.add_argument("--models", default="sasrec,gru4rec", metavar="NAMES", help="sequence models (default %(default)s)")
    p.add_argument("--sources", default="sasrec,gru4rec,itemknn,mf,pop", metavar="NAMES",
                   help="the pipeline's candidate generators (default %(default)s)")
    p.add_argument("--budget-min", type=float, default=5.0, metavar="M",
                   help="training minutes per sequence model (default %(default)s)")
    p.add_argument("--max-len", type=int, default=50, metavar="L", help="history length (default %(default)s)")
    p.add_argument("--ranker-epochs", type=int, default=20, metavar="E",
                   help="ranker epochs at most (default %(default)s)")
    p.add_argument("--test-days", type=float, default=7.0, metavar="D",
                   help="the held-out slice: the newest D days (and D days of validation before) (default %(default)s)")
    p.add_argument("--metric", default="NDCG@10", help="the gate's metric (default %(default)s)")
    p.add_argument("--tolerance", type=float, default=0.05, metavar="F",
                   help="how much lower (relative) the new metric may be (default %(default)s)")
    p.add_argument("--keep", type=int, default=5, metavar="K",
                   help="versions kept per model: the newest K not rejected (rejected rounds never push out a "
                        "rollback target), plus rejected ones among the newest K; never a current one or what a "
                        "kept release uses (default %(default)s)")
    p.add_argument("--force", action="store_true",
                   help="promote even when the current release cannot be loaded to compare with (by default the "
                        "gate then rejects, saying why). The first release, with no CURRENT at all, needs no --force")
    p.add_argument("--warm-start", action="store_true",
                   help="initialise the sequence models from the current release and fine-tune (use with --since-days)")
    p.add_argument("--every", metavar="PERIOD", help="repeat every PERIOD (e.g. 6h, 30m); default: once")
    add_registry_option(p)
    p.add_argument("--json", metavar="PATH", help="write the round's summary as JSON")
    p.add_argument("--fail-on-reject", action="store_true", help="exit with status 3 when the gate rejects")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_retrain)

    p = sub.add_parser("models", help="list the registry's versions, or roll a model back",
                       description="`streamrec models list` shows every version with its status (promoted, rejected, "
                                   "published), metrics and which is CURRENT. `streamrec models rollback NAME` points "
                                   "NAME back at the version it served before (for deepfm: the whole release) and "
                                   "notifies the servers.")
    msub = p.add_subparsers(dest="models_command", required=True, metavar="COMMAND")
    mp = msub.add_parser("list", help="versions, statuses, metrics and CURRENT")
    mp.add_argument("name", nargs="?", help="only this model")
    mp.add_argument("--json", action="store_true")
    add_registry_option(mp)
    mp = msub.add_parser("rollback", help="point a model (deepfm: the release) back at its previous version")
    mp.add_argument("name", nargs="?", default=RANKER, help=f"default {RANKER}, the release the servers follow")
    add_registry_option(mp)
    p.set_defaults(func=_models)
