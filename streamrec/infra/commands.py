"""``streamrec infra``: start, stop or check the local Kafka broker and Redis. Parsing and printing only."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from streamrec.settings import Settings

__all__ = ["register"]


def _infra(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.infra.manager import infra_down, infra_status, infra_up

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


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("infra", help="start, stop or check the local Kafka broker and Redis",
                       description="Manage a real Kafka 4.x broker (KRaft) and redis-server on loopback. "
                       "`up` is idempotent and waits until both answer; `down` stops only what `up` started.")
    p.add_argument("action", choices=("up", "down", "status"))
    p.add_argument("--json", action="store_true", help="print machine-readable status")
    p.set_defaults(func=_infra)
