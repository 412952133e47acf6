"""``streamrec live``: the demo of the running stack. Parsing and printing only."""

from __future__ import annotations

import argparse
import json

from streamrec.data.names import MOVIELENS
from streamrec.serve.commands import add_client_tls, add_target, client_tls, target_of
from streamrec.settings import Settings, add_registry_option

__all__ = ["register"]


def _live(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.demo.run import LiveConfig, plan_live, run_live
    from streamrec.demo.view import LiveView, format_summary

    config = LiveConfig(target=target_of(args, settings), sessions=args.sessions,
                        rate=args.rate, k=args.k, dataset=args.dataset, seed=args.seed, max_clicks=args.max_clicks,
                        wait_server_s=args.wait_server,
                        tls=client_tls(args))
    plan = plan_live(settings, config)
    clicks = sum(len(s.items) - 1 for s in plan.sessions)
    note = (f"{len(plan.sessions)} test session(s) of {plan.dataset}, {clicks} click(s) to predict; {plan.protocol}"
            + ("" if plan.held_out else "; the ranker was not fitted on this split, so it may have seen these clicks"))
    with LiveView(plan.titles, note, quiet=args.json) as view:
        summary = run_live(settings, config, plan, view.update)
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
    p.add_argument("--dataset", choices=MOVIELENS, default=None,
                   help="where sessions come from (default: the registry's CURRENT ranker's dataset)")
    add_registry_option(p, help="registry whose ranker names the dataset and split (default STREAMREC_REGISTRY, "
                        "./models)")
    add_target(p)
    p.add_argument("--wait-server", type=float, default=180.0, metavar="S",
                   help="how long to wait for the server to load its pipeline (default 180)")
    p.add_argument("--json", action="store_true", help="no live view; print the summary as JSON")
    add_client_tls(p)
    p.set_defaults(func=_live)
