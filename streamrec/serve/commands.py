"""The serving commands: run the gRPC server (``serve``), ask it for a session's items (``recommend``)
and check its health service (``health``). Parsing and printing only.

Every command that calls the server (these, ``live`` and ``bench serve``) takes the same ``--target``
(``add_target``, ``target_of``) and, where it can speak TLS, the same ``--ca``, ``--cert`` and ``--key``
(``add_client_tls``, ``client_tls``).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from streamrec.data.names import DEFAULT_DATASET, MOVIELENS
from streamrec.serve.health_probe import READINESS_SERVICE, check, healthy
from streamrec.settings import Settings, add_registry_option

if TYPE_CHECKING:  # every streamrec run builds these parsers; grpc is imported only when a client runs
    from streamrec.serve.client import ClientTLS

__all__ = ["add_client_tls", "add_target", "client_tls", "register", "target_of"]


def add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", metavar="HOST:PORT",
                        help="server (default STREAMREC_GRPC_HOST:STREAMREC_GRPC_PORT, loopback when bound to 0.0.0.0)")


def target_of(args: argparse.Namespace, settings: Settings) -> str:
    """``--target``, or the configured server; a server bound to every interface is reached on loopback
    (from its own container, say)."""
    if args.target:
        return str(args.target)
    host = "127.0.0.1" if settings.grpc_host in ("0.0.0.0", "::", "") else settings.grpc_host
    return f"{host}:{settings.grpc_port}"


def add_client_tls(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ca", metavar="PEM", help="CA of the server's certificate (enables TLS)")
    parser.add_argument("--cert", metavar="PEM", help="client certificate (mTLS)")
    parser.add_argument("--key", metavar="PEM", help="client key (mTLS)")


def client_tls(args: argparse.Namespace) -> ClientTLS:
    from streamrec.serve.client import ClientTLS

    return ClientTLS(*(Path(p) if p else None for p in (args.ca, args.cert, args.key)))


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.serve.server import serve_processes

    if args.port is not None:
        settings = settings.replace(grpc_port=args.port)
    logging.getLogger("streamrec").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    serve_processes(settings, args.processes)
    return 0


def _recommend(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.serve.client import dataset_of, format_response, open_channel, recommend, titles_of

    with open_channel(target_of(args, settings), client_tls(args)) as channel:
        response = recommend(channel, args.session, args.k, exclude=tuple(args.exclude), timeout_s=args.timeout)
    dataset = args.dataset or dataset_of(settings.registry) or DEFAULT_DATASET
    print(format_response(args.session, response, titles_of(dataset, settings.data_dir)))
    return 0


def _health(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.serve.client import open_channel

    target = target_of(args, settings)
    with open_channel(target, client_tls(args)) as channel:
        status = check(channel, args.service, args.timeout)
    if not args.quiet:
        print(f"{target} {args.service or '(server)'}: {status}")
    return 0 if healthy(args.service, status) else 1


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("serve", help="run the gRPC recommendation server (streamrec.v1.Recommender)",
                       description="Serve Recommend, RecommendForSequence, SimilarItems and RecommendStream over "
                       "grpc.aio, with the gRPC health and reflection services and Prometheus metrics "
                       "(STREAMREC_METRICS_PORT). Loads the "
                       "CURRENT deepfm pipeline of the registry and swaps in new versions after checking them; reads "
                       "sessions from Redis. TLS via STREAMREC_TLS_CERT/_KEY (+ _CLIENT_CA for mTLS). "
                       "Stop with Ctrl-C.")
    p.add_argument("--port", type=int, default=None, help="gRPC port (default STREAMREC_GRPC_PORT, 50051)")
    add_registry_option(p)
    p.add_argument("--processes", type=int, default=1, metavar="N",
                   help="server processes sharing the port (SO_REUSEPORT), to use N cores (default 1); "
                   "STREAMREC_SERVE_LISTENERS sets the grpc.aio servers in each (default 1)")
    p.set_defaults(func=_serve)

    p = sub.add_parser("recommend", help="ask the running server for a session's recommendations",
                       description="Call Recommend for a session kept in Redis and print the items with their titles.")
    p.add_argument("--session", required=True, metavar="ID", help="session id")
    p.add_argument("--k", type=int, default=10, help="how many (default 10)")
    p.add_argument("--exclude", nargs="*", default=[], metavar="ITEM", help="item ids never to recommend")
    add_target(p)
    p.add_argument("--dataset", choices=MOVIELENS, default=None,
                   help="where titles come from (default: the registry's CURRENT ranker's dataset)")
    p.add_argument("--timeout", type=float, default=2.0, metavar="S", help="deadline in seconds (default 2)")
    add_client_tls(p)
    p.set_defaults(func=_recommend)

    p = sub.add_parser("health", help="check a running server's gRPC health service (exit 0 if SERVING)",
                       description="Call grpc.health.v1.Health/Check on the server and exit 0 when the status is "
                       "SERVING, 1 otherwise (NOT_SERVING, unreachable, deadline exceeded). For --service '' (liveness) "
                       "RESOURCE_EXHAUSTED counts as alive: the server is refusing calls past its bound. The default "
                       "service is "
                       f"{READINESS_SERVICE} (SERVING once a pipeline is loaded: readiness); --service '' asks "
                       "about the process itself (liveness). For container health checks and exec probes.")
    add_target(p)
    p.add_argument("--service", default=READINESS_SERVICE, metavar="NAME",
                   help=f"health service name (default {READINESS_SERVICE}; '' for the server as a whole)")
    p.add_argument("--timeout", type=float, default=2.0, metavar="S", help="deadline in seconds (default 2)")
    add_client_tls(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing; the exit code says it")
    p.set_defaults(func=_health)
