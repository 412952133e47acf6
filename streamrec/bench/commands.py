"""``streamrec bench``: arrays, catalog, ingest, memory, models, peer, serve, session-reads and startup benchmarks
(and ghz-install).

Parsing and printing only."""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from streamrec.data.names import DEFAULT_DATASET, MOVIELENS
from streamrec.retrieval.ann import AnnConfig as AnnDefaults
from streamrec.serve.commands import add_target, target_of
from streamrec.settings import Settings, add_registry_option

if TYPE_CHECKING:
    from streamrec.bench.memory import Shape

__all__ = ["register"]


def _bench(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.bench.ingest import DEFAULT_LAYERS, IngestBenchConfig, format_ingest, run_ingest_bench
    from streamrec.bench.layers import ALL_LAYERS

    if args.hostile:
        from streamrec.bench.hostile import HostileBenchConfig, format_hostile, run_hostile_bench

        hostile = run_hostile_bench(settings, HostileBenchConfig(events=args.hostile_events, keep=args.keep))
        print(format_hostile(hostile))
        _write_json(args.json, hostile)
        return 0 if hostile["lost"] == 0 and hostile["probe_sessions_wrong"] == 0 and hostile["under_cap"] else 1
    layers = ALL_LAYERS if args.layers else ("shipped",) if args.no_ceiling else DEFAULT_LAYERS
    config = IngestBenchConfig(events=args.events, fresh_rates=tuple(args.rate), fresh_seconds=args.fresh_seconds,
                               source=args.source, keep=args.keep, layers=layers, workers=args.workers,
                               fsync_modes=tuple(args.fsync or ()), repeats=args.repeats)
    result = run_ingest_bench(settings, config)
    print(format_ingest(result))
    if _write_json(args.json, result):
        print(f"wrote {args.json}")
    return 0 if result["lost"] == 0 else 1


def _bench_arrays(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.bench.arrays import ArraysBenchConfig, format_arrays, run_arrays_bench

    report = run_arrays_bench(ArraysBenchConfig(registry=settings.registry, repeats=args.repeats), say=print)
    print()
    print(format_arrays(report))
    if _write_json(args.json, report):
        print(f"wrote {args.json}")
    return 0


def _bench_memory(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.bench.memory import DEFAULT_SHAPES, MemoryBenchConfig, format_memory, run_memory_bench

    shapes = tuple(args.shapes) if args.shapes else DEFAULT_SHAPES
    report = run_memory_bench(settings, MemoryBenchConfig(shapes=shapes, seed=args.seed, progress=not args.quiet))
    print(format_memory(report))
    if _write_json(args.json, report):
        print(f"wrote {args.json}")
    return 0


def _bench_models(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.bench.models import ModelBenchConfig, bench_current_pipeline, bench_models, format_rows
    from streamrec.errors import ConfigError

    registry = settings.registry
    config = ModelBenchConfig(batch_sizes=tuple(args.batch), seq_len=args.seq_len, runs=args.runs,
                              warmup=args.warmup, intra_op_threads=args.threads, cold=args.cold)
    rows = bench_models(registry, config)
    if not rows:
        raise ConfigError(f"no model with a CURRENT version under {registry}; run `streamrec train` first")
    if args.pipeline:
        rows += bench_current_pipeline(registry, config)
    print(f"onnxruntime CPU, {args.threads} intra-op thread(s), {args.runs} runs after {args.warmup} warm-up"
          f"{', cold caches' if args.cold else ''}; numpy's BLAS: {rows[0].get('blas')}")
    print(format_rows(rows))
    _write_json(args.json, rows)
    return 0


def _bench_session_reads(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.bench.session_reads import SessionReadsConfig, format_session_reads, run_session_reads

    config = SessionReadsConfig(sessions=args.sessions, max_len=args.max_len, reads=args.reads,
                                concurrency=tuple(args.concurrency), repeats=args.repeats, dataset=args.dataset,
                                load_sessions=not args.no_load)
    report = run_session_reads(settings, config)
    print(format_session_reads(report))
    if _write_json(args.json, report):
        print(f"wrote {args.json}")
    return 0


def _bench_peer(args: argparse.Namespace, settings: Settings) -> int:
    import torch

    from streamrec.bench.peer import PeerBenchConfig, format_table, run_peer_bench

    sides = ("peer", "ours") if args.only is None else (args.only,)
    config = PeerBenchConfig(dataset=args.dataset, max_len=args.max_len, budget_s=args.budget_min * 60,
                             threads=args.threads or torch.get_num_threads(), seed=args.seed,
                             peer_batch_size=args.peer_batch, sides=sides, python=args.python,
                             progress=not args.quiet)
    report = run_peer_bench(config, settings.data_dir, settings.cache_dir, say=print)
    print()
    print(format_table(report))
    if _write_json(args.json, report):
        print(f"wrote {args.json}")
    return 0


def _bench_serve(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.bench.ghz import ghz_path
    from streamrec.bench.serve import ServeBenchConfig, format_result, run_serve_bench
    from streamrec.errors import ConfigError

    ghz = ghz_path(settings.cache_dir)
    if args.generator == "ghz" and not ghz.is_file():
        raise ConfigError(f"no ghz at {ghz}: run `streamrec bench ghz-install` first (needs Go)")
    use_ghz = args.generator == "ghz" or (args.generator == "auto" and ghz.is_file())
    config = ServeBenchConfig(target=target_of(args, settings), rate=args.rate, seconds=args.seconds,
                              concurrency=args.concurrency, sessions=args.sessions, k=args.k, dataset=args.dataset,
                              load_sessions=not args.no_load, channels=args.channels, long_len=args.long_len,
                              ghz=ghz if use_ghz else None, server_pid=args.server_pid,
                              skip_pipeline_target=args.skip_pipeline_target, floor=not args.no_floor,
                              start_server=settings.registry if args.start_server else None,
                              processes=args.processes, flood=args.flood)
    if args.generator == "auto" and not use_ghz:
        print(f"no ghz at {ghz} (`streamrec bench ghz-install`): the Python generator drives the load")
    result = run_serve_bench(settings, config)
    print(format_result(result))
    _write_json(args.json, result)
    return 0


def _bench_ghz_install(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.bench.ghz import GHZ_MODULE, GHZ_VERSION, install_ghz

    print(f"go install {GHZ_MODULE}@v{GHZ_VERSION} ...")
    print(f"installed {install_ghz(settings.cache_dir)}: `streamrec bench serve` uses it from now on")
    return 0


def _bench_startup(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.bench.startup import StartupBenchConfig, format_startup, run_startup_bench

    config = StartupBenchConfig(registry=settings.registry, processes=tuple(args.processes), runs=args.runs,
                                server_pythonpath=args.server_pythonpath, timeout_s=args.timeout,
                                warm_requests=args.warm_requests)
    report = run_startup_bench(config, say=print)
    print()
    print(format_startup(report))
    if _write_json(args.json, report):
        print(f"wrote {args.json}")
    return 0 if all(r["answered"] for r in report["processes"].values()) else 1


def _shape(text: str) -> Shape:
    """argparse's ``type`` for ``--shapes``: the bench module (and what it imports) only when parsed."""
    from streamrec.bench.memory import Shape
    from streamrec.errors import ConfigError

    try:
        return Shape.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _factor(text: str) -> float:
    """argparse's ``type`` for ``--flood``: a positive, finite multiple."""
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"a multiple of saturation is a number: {text!r}") from exc
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"a multiple of saturation is positive: {text!r}")
    return value


def _rates(text: str) -> list[float]:
    """argparse's ``type`` for ``--rate``: one or more positive rates, comma-separated."""
    try:
        rates = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"rates are numbers, comma-separated: {text!r}") from exc
    if not rates or min(rates) <= 0:
        raise argparse.ArgumentTypeError(f"rates must be positive: {text!r}")
    return rates


def _fsync_modes(text: str) -> list[str]:
    """argparse's ``type`` for ``--fsync``: Redis appendfsync values, comma-separated."""
    modes = [part.strip() for part in text.split(",") if part.strip()]
    if not modes or not set(modes) <= {"always", "everysec", "no"}:
        raise argparse.ArgumentTypeError(f"fsync modes are always, everysec and no: {text!r}")
    return modes


def _bench_catalog(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.bench.catalog import CatalogBenchConfig, format_catalog, plot_catalog, run_catalog_bench
    from streamrec.retrieval.ann import AnnConfig

    config = CatalogBenchConfig(registry=settings.registry, model=args.model, sizes=tuple(args.sizes),
                                kinds=tuple(args.kinds), queries=args.queries, k=args.k, seed=args.seed)
    result = run_catalog_bench(config, settings.data_dir, say=lambda line: print(line, file=sys.stderr, flush=True),
                               index_config=lambda kind: AnnConfig(kind=kind, nprobe=args.nprobe,
                                                                   ef_search=max(args.ef_search, args.k)))
    print(format_catalog(result))
    plot = plot_catalog(result, Path(args.plot) if args.plot else settings.home / "bench" / "catalog.png")
    print(f"wrote {plot}")
    if _write_json(args.json, result):
        print(f"wrote {args.json}")
    return 0 if all(all(met.values()) for met in result["met"].values()) else 1


def _write_json(path: str | None, figures: object) -> bool:
    """``--json PATH``: every bench can also write its figures; False when no path was given."""
    if not path:
        return False
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(figures, indent=2) + "\n")
    return True


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("bench", help="benchmarks that print figures and can write them as JSON")
    bsub = p.add_subparsers(dest="bench", required=True, metavar="BENCH")
    bp = bsub.add_parser("ingest", help="end-to-end ingest: Kafka -> worker(s) -> Redis",
                         description="Throughput: pre-publish N events, start the worker(s), time how fast they reach "
                         "Redis, with the CPU per event of the worker, Redis and the broker; --layers times each layer "
                         "of ingest the same way. Freshness: publish at fixed rates and time each event from publish "
                         "until visible in Redis (keyspace notifications). Runs on its own topic and key prefix, then "
                         "cleans up; exits 1 if an event was lost. The protocol is in streamrec/bench/ingest.py.")
    bp.add_argument("--events", type=int, default=200_000, help="events for the throughput phase (default 200000)")
    bp.add_argument("--rate", type=_rates, default=[5000.0], metavar="R[,R...]",
                    help="offered rate(s) of the freshness phases, events/s (default 5000)")
    bp.add_argument("--fresh-seconds", type=float, default=20.0, help="length of each freshness phase (default 20)")
    bp.add_argument("--fsync", type=_fsync_modes, metavar="MODE[,MODE...]",
                    help="run the freshness phases under each Redis appendfsync MODE (always, everysec, no), set with "
                    "CONFIG SET and put back afterwards (default: as Redis runs)")
    bp.add_argument("--repeats", type=int, default=1, metavar="N",
                    help="run each freshness phase N times, interleaved; the summary gives median, min and max "
                    "(default 1)")
    bp.add_argument("--layers", action="store_true",
                    help="time every layer on the same events, each with its CPU per event: a bare aiokafka "
                    "consumer, Faust in dry run, + our parsing, + Redis writes with persistence off, the worker as "
                    "shipped (see streamrec/bench/layers.py)")
    bp.add_argument("--source", choices=(*MOVIELENS, "synthetic"), default=DEFAULT_DATASET,
                    help=f"events for the throughput phase: a MovieLens replay or synthetic sessions "
                    f"(default {DEFAULT_DATASET})")
    bp.add_argument("--workers", type=int, default=1,
                    help="worker processes, at most the topic's partitions (default 1); with more than one, "
                    "throughput is timed once their group is stable")
    bp.add_argument("--hostile", action="store_true",
                    help="instead, the hostile phase: events with random new item ids, a third of them in one "
                    "endless session, plus probe sessions checked at the end; reports Redis used_memory against "
                    "its cap, losses and the size of every key family (needs a Redis maxmemory)")
    bp.add_argument("--hostile-events", type=int, default=1_000_000, metavar="N",
                    help="events of the hostile phase (default 1000000)")
    bp.add_argument("--keep", action="store_true", help="keep the bench topics and Redis keys")
    bp.add_argument("--no-ceiling", action="store_true",
                    help="time only the worker as shipped, not Faust's dry run on the same events first")
    bp.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    p.set_defaults(func=_bench)
    bp = bsub.add_parser("arrays", help="load time of the current release's arrays: our .npy files against safetensors",
                         description="Read the arrays of the current release (every generator's, and the ranker's "
                         "item table), write each member's into a temporary directory as our .npy layout and as one "
                         "safetensors file, and time, with the page cache warm, the median of --repeats loads of "
                         "each: read_arrays (mmap + sha256), np.load mapped, np.load into memory, "
                         "safetensors.numpy.load_file, safetensors safe_open + get_tensor. Whether a way shares "
                         "the arrays between processes is stated from the method. The protocol is in "
                         "streamrec/bench/arrays.py.")
    add_registry_option(bp)
    bp.add_argument("--repeats", type=int, default=20, metavar="N",
                    help="timed loads per member and way, after one untimed load (default 20)")
    bp.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bp.set_defaults(func=_bench_arrays)
    bp = bsub.add_parser("memory", help="Redis memory per session as the worker writes it, on a throwaway Redis",
                         description="Start a redis-server of the bench's own (free loopback port, temporary "
                         "directory, no persistence; stopped at the end), write sessions of each shape through the "
                         "worker's SessionWriter with the settings of the environment (ML-1M-like ids, events "
                         "interleaved across sessions as a live stream brings them), and report per shape: bytes per "
                         "session (used_memory after MEMORY PURGE, after less before, less the shared counters), "
                         "the counters' bytes ({pop} and cooc:* keys), and MEMORY USAGE of one session's :items and "
                         ":seen keys.")
    bp.add_argument("--shapes", type=_shape, nargs="+", default=None, metavar="SESSIONSxEVENTS",
                    help="sessions x events per session (default 5000x20 2000x50 1000x200)")
    bp.add_argument("--seed", type=int, default=0, help="seed of the item draws (default 0)")
    bp.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bp.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    bp.set_defaults(func=_bench_memory)
    bp = bsub.add_parser("models", help="onnxruntime latency of each CURRENT model in the registry",
                         description="Load every model whose CURRENT points at an exported version, and time "
                         "onnxruntime inference (CPU) on random sequences: p50/p99 per batch size after warm-up.")
    add_registry_option(bp)
    bp.add_argument("--batch", type=int, nargs="+", default=[1, 32], help="batch sizes (default 1 32)")
    bp.add_argument("--seq-len", type=int, default=50, help="sequence length (default 50)")
    bp.add_argument("--runs", type=int, default=200, help="timed runs per batch size (default 200)")
    bp.add_argument("--warmup", type=int, default=20, help="untimed runs first (default 20)")
    bp.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (default 1)")
    bp.add_argument("--pipeline", action="store_true",
                    help="also time the whole ranking pipeline (Pipeline.recommend_many) per batch size, and each "
                    "of its stages, on random in-memory sessions of --seq-len items; the release is loaded from "
                    "its artifacts as a server loads it (needs a CURRENT deepfm)")
    bp.add_argument("--cold", action="store_true",
                    help="write 64 MiB before each timed call, so that it starts with cold caches: what a server "
                    "pays at moderate load, where other processes run between its requests")
    bp.add_argument("--json", metavar="PATH", help="also write the figures as flat JSON")
    bp.set_defaults(func=_bench_models)
    bp = bsub.add_parser("catalog", help="retrieval at catalogue scale: exact product against the item index",
                         description="Grow the CURRENT session-contract model's item table (`streamrec train "
                         "--contract session`) to each --sizes with draws from a Gaussian mixture fitted to it, and "
                         "time the top --k for one real session vector at a time, one thread: the exact product, and "
                         "each index kind (build time, memory, recall@100 and @500 against exact). Prints a table, "
                         "plots latency against size, and exits 1 when a target at 10^6 items is missed (p50 <= 1 "
                         "ms, p99 <= 3 ms, recall@500 >= 0.95, index <= 1 GB).")
    add_registry_option(bp)
    bp.add_argument("--model", default="sasrec", choices=("sasrec", "gru4rec", "bert4rec"),
                    help="whose item vectors and sessions (default sasrec)")
    bp.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000],
                    help="catalogue sizes (default 10000 100000 1000000)")
    bp.add_argument("--kinds", nargs="+", default=["ivf"], choices=("ivf", "hnsw", "usearch"),
                    help="index kinds: faiss IVF, faiss HNSW, usearch HNSW (default ivf; the others take minutes "
                    "to build at 10^6 on two cores)")
    bp.add_argument("--nprobe", type=int, default=AnnDefaults.nprobe,
                    help=f"ivf: clusters scored per query (default {AnnDefaults.nprobe})")
    bp.add_argument("--ef-search", type=int, default=AnnDefaults.ef_search,
                    help=f"hnsw, usearch: candidates kept while searching, at least --k (default {AnnDefaults.ef_search})")
    bp.add_argument("--queries", type=int, default=200, help="real session vectors, timed one at a time (default 200)")
    bp.add_argument("--k", type=int, default=500, help="items retrieved per query (default 500)")
    bp.add_argument("--seed", type=int, default=0, help="of the users drawn and of the mixture (default 0)")
    bp.add_argument("--plot", metavar="PATH", help="the latency plot (default $STREAMREC_HOME/bench/catalog.png)")
    bp.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bp.set_defaults(func=_bench_catalog)
    bp = bsub.add_parser("peer", help="our SASRec and RecBole's, same split, same wall-clock budget",
                         description="Train RecBole 1.2.1's SASRec (in its own venv under .cache/peer-recbole/, "
                         "created on first use) and ours on the identical leave-one-out split, one after the "
                         "other, each for the same wall-clock budget and torch threads; test both on the full "
                         "catalogue with the history excluded and print one table.")
    bp.add_argument("--dataset", choices=MOVIELENS, default=DEFAULT_DATASET, help=f"default {DEFAULT_DATASET}")
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

    bp = bsub.add_parser("serve", help="where the server's CPU goes: CPU per request, qps and latency of each "
                         "request kind", description="Store real sessions (users' histories of the dataset, and long "
                         "ones of --long-len items) in Redis under the server's prefix, then drive, phase after phase: "
                         "the gRPC floor (a minimal grpc.aio health server started here), the server's empty RPC "
                         "(Health/Check), Recommend with the pipeline skipped (a server started with "
                         "STREAMREC_SERVE_SKIP_PIPELINE=1: --skip-pipeline-target or --start-server), Recommend at "
                         "--rate (open loop), Recommend at saturation (--concurrency in flight), the same over "
                         "RecommendStream (8 streams, --concurrency in flight, always from the Python generator, which "
                         "reads each answer's status), and Recommend on the long sessions. Prints per phase qps, "
                         "p50/p90/p99 ms, errors and the server's CPU ms per request (its process tree's utime+stime "
                         "from /proc over the phase, divided by the phase's requests), then empty RPC / floor, "
                         "Recommend - floor and RecommendStream / Recommend. The load comes from ghz "
                         "(`streamrec bench ghz-install`) when installed, else from a Python generator. It warns "
                         "when a --target server shares this shell's CPU scheduling group (start it with setsid): "
                         "under overload its figures then measure the scheduler too. The protocol is in "
                         "streamrec/bench/serve.py.")
    add_target(bp)
    add_registry_option(bp, help="with --start-server: the registry the servers serve (default STREAMREC_REGISTRY, "
                        "./models)")
    bp.add_argument("--start-server", action="store_true",
                    help="start the servers here (`streamrec serve` on free ports, this environment's Redis "
                    "settings): one as configured and one that skips the pipeline; --target is then ignored")
    bp.add_argument("--processes", type=int, default=1, metavar="N",
                    help="with --start-server: processes of each server (serve --processes; default 1)")
    bp.add_argument("--server-pid", type=int, default=None, metavar="PID",
                    help="the server whose CPU is read, with its descendants (default: the process tree "
                    "listening on the target's port on this machine)")
    bp.add_argument("--skip-pipeline-target", metavar="HOST:PORT", default=None,
                    help="a running server started with STREAMREC_SERVE_SKIP_PIPELINE=1 (on this machine), for the "
                    "phase of Recommend without the pipeline")
    bp.add_argument("--generator", choices=("auto", "ghz", "python"), default="auto",
                    help="the load generator (default auto: ghz when `bench ghz-install` installed it)")
    bp.add_argument("--rate", type=float, default=500.0, help="fixed-rate phase, requests/s (default 500)")
    bp.add_argument("--flood", type=_factor, default=None, metavar="X",
                    help="a last phase at X times the saturation phase's qps (open loop), with its load-shedding "
                    "checks: the share of saturation answered, the answered calls' p99, and whether every other "
                    "call was refused with RESOURCE_EXHAUSTED (issue 16's flood: --flood 2); default: none")
    bp.add_argument("--seconds", type=float, default=20.0,
                    help="length of each phase; with ghz, the count of calls that takes (default 20)")
    bp.add_argument("--concurrency", type=int, default=32, help="requests in flight at saturation (default 32)")
    bp.add_argument("--sessions", type=int, default=2000, help="sessions stored in Redis (default 2000)")
    bp.add_argument("--long-len", type=int, default=200, metavar="N",
                    help="items of the long sessions' phase, from users with at least N (default 200; 0: no "
                    "such phase)")
    bp.add_argument("--k", type=int, default=10)
    bp.add_argument("--dataset", choices=MOVIELENS, default=DEFAULT_DATASET,
                    help=f"sessions come from it (default {DEFAULT_DATASET})")
    bp.add_argument("--no-load", action="store_true",
                    help="sessions are already in Redis (bench:sess-N); no long sessions' phase")
    bp.add_argument("--no-floor", action="store_true", help="do not start and measure the gRPC floor")
    bp.add_argument("--channels", type=int, default=16,
                    help="connections, used in turn: the kernel hands each to one process of a server of several "
                         "(SO_REUSEPORT), so with few of them a process can be left idle; the JSON's cpu_shares "
                         "say how the processes shared the work (default 16)")
    bp.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bp.set_defaults(func=_bench_serve)
    bp = bsub.add_parser("session-reads", help="what a session read costs the server and Redis: pipelined against "
                         "one round trip per read",
                         description="Store ML-1M tails in Redis as `bench serve` does, check that both ways read them "
                         "alike, then time reads at each --concurrency: through the server's SessionSource (one read "
                         "in flight, the reads asked for meanwhile sent as one pipeline) and one round trip per read "
                         "(how the server read them before). Prints CPU per read in this process and in Redis, wall "
                         "time per read and reads per round trip, the median of --repeats runs taken in turn.")
    bp.add_argument("--sessions", type=int, default=2000, help="sessions stored and read in turn (default 2000)")
    bp.add_argument("--max-len", type=int, default=50, help="events per session at most (default 50)")
    bp.add_argument("--reads", type=int, default=6000, help="reads per way, concurrency and run (default 6000)")
    bp.add_argument("--concurrency", type=int, nargs="+", default=[1, 16], help="reads in flight (default 1 16)")
    bp.add_argument("--repeats", type=int, default=3, help="runs of each way, taken in turn (default 3)")
    bp.add_argument("--dataset", choices=MOVIELENS, default=DEFAULT_DATASET, help="sessions come from it")
    bp.add_argument("--no-load", action="store_true", help="read the sessions `bench serve` stored (bench:sess-N)")
    bp.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bp.set_defaults(func=_bench_session_reads)
    bp = bsub.add_parser("ghz-install", help="install the pinned ghz load generator that `bench serve` uses",
                         description="go install github.com/bojand/ghz/cmd/ghz@v0.120.0 (from the Go module proxy) "
                         "with GOBIN=<cache dir>/ghz/v0.120.0, where `bench serve` looks for it. Needs Go.")
    bp.set_defaults(func=_bench_ghz_install)
    bp = bsub.add_parser("startup", help="server start-up time, memory per process and release size on disk",
                         description="Start `streamrec serve` on the registry as a child process (this interpreter, "
                         "a free port, metrics off), --runs times for each --processes count, the first run cold. "
                         "Times from the spawn until the gRPC health service answers (listening) and until "
                         "streamrec.v1.Recommender is SERVING in every process (polled every 20 ms); then RSS, PSS "
                         "and USS of the server and all its descendants (/proc/<pid>/smaps_rollup; the PSS total "
                         "counts shared pages once), one Recommend, SIGTERM. Also the size on disk of the current "
                         "release: the CURRENT ranker and every version its manifest names. The protocol is in "
                         "streamrec/bench/startup.py.")
    add_registry_option(bp)
    bp.add_argument("--processes", type=int, nargs="+", default=[1, 2], metavar="N",
                    help="server processes (serve --processes), one count after the other (default 1 2)")
    bp.add_argument("--runs", type=int, default=3, metavar="R",
                    help="starts per processes count; the first is the cold one (default 3)")
    bp.add_argument("--warm-requests", type=int, default=0, metavar="N",
                    help="RecommendForSequence requests sent once SERVING, before memory is read (default 0)")
    bp.add_argument("--server-pythonpath", type=Path, default=None, metavar="DIR",
                    help="put DIR in front of the server's PYTHONPATH (only the server's): measure the server of "
                    "another checkout, e.g. the figures before a change")
    bp.add_argument("--timeout", type=float, default=600.0, metavar="S",
                    help="seconds a start may take to serve before the bench gives up (default 600)")
    bp.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    bp.set_defaults(func=_bench_startup)
