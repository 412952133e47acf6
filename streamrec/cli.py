"""The ``streamrec`` command line. Prints for people; the work is done by the library."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence

from streamrec.archive import commands as archive_commands
from streamrec.bench import commands as bench_commands
from streamrec.demo import commands as demo_commands
from streamrec.errors import StreamrecError
from streamrec.infra import commands as infra_commands
from streamrec.offline import commands as offline_commands
from streamrec.retrain import commands as retrain_commands
from streamrec.serve import commands as serve_commands
from streamrec.settings import Settings
from streamrec.stream import commands as stream_commands

__all__ = ["build_parser", "main"]

#: Each area's ``register``, in the order ``streamrec --help`` lists their commands.
AREAS: tuple[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None], ...] = (
    infra_commands.register,  # infra
    stream_commands.register,  # worker, publish, sessions, stats, dlq
    archive_commands.register,  # archive
    bench_commands.register,  # bench
    offline_commands.register,  # evaluate, train, train-ranker
    serve_commands.register,  # serve, recommend, health
    demo_commands.register,  # live
    retrain_commands.register,  # retrain, models
)


def _settings(args: argparse.Namespace, settings: Settings) -> int:
    for key, value in sorted(settings.to_env(redact=True).items()):
        print(f"{key}={value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="streamrec", description="Streaming, real-time, session-based recommendations. "
        "Settings come from STREAMREC_* environment variables (see `streamrec settings`).")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in AREAS:
        register(sub)
    p = sub.add_parser("settings", help="print the effective settings as STREAMREC_* variables (secrets masked)")
    p.set_defaults(func=_settings)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        if getattr(args, "registry", None) is not None:  # --registry (settings.add_registry_option)
            settings = settings.replace(registry=args.registry)
        return int(args.func(args, settings))
    except StreamrecError as exc:
        print(f"streamrec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
