"""The offline jobs' commands: ``evaluate`` models on a split, ``train`` the sequence models, ``tune``
their settings and ``train-ranker`` the pipeline's ranker. Parsing and printing only.

They live here, with the ranker job, because each may need the whole pipeline (``evaluate
--models pipeline`` builds it through the model factory).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from streamrec.data.names import DEFAULT_DATASET, MOVIELENS
from streamrec.registry import RANKER_ARCHS
from streamrec.settings import Settings, add_registry_option

__all__ = ["register"]


def _evaluate(args: argparse.Namespace, settings: Settings) -> int:
    import textwrap

    from tqdm import tqdm

    from streamrec.data.datasets import load
    from streamrec.errors import ConfigError
    from streamrec.eval import report
    from streamrec.eval.evaluate import fit_and_evaluate
    from streamrec.eval.factory import create
    from streamrec.eval.protocols import protocol_named, split

    names = list(dict.fromkeys(n.strip() for n in args.models.split(",") if n.strip()))
    if not names or (args.limit_cases is not None and args.limit_cases < 1):
        raise ConfigError("--models needs at least one name and --limit-cases a positive number")
    models = [create(name) for name in names]  # fail on a bad name before loading anything
    if "pipeline" in names:  # its neural sources come from the registry
        from streamrec.offline.assemble import PipelineSpec, TwoStage

        spec = PipelineSpec(registry=settings.registry)
        models = [TwoStage(spec) if n == "pipeline" else m for n, m in zip(names, models, strict=True)]
    if args.protocol == "loo" and (args.gap is not None or args.test_days is not None):
        raise ConfigError("--gap and --test-days apply to --protocol session only")
    protocol = protocol_named(args.protocol, args.dataset, gap_s=args.gap, test_days=args.test_days)
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


def _train(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.offline.train_job import REPORTED, TrainJob, parse_network, run_train_job

    job = TrainJob(models=tuple(n.strip() for n in args.models.split(",") if n.strip()), dataset=args.dataset,
                   network=parse_network(args.set), protocol=args.protocol, data_dir=settings.data_dir,
                   publish=not args.no_publish,
                   registry=settings.registry, curves_dir=settings.home / "train",
                   max_len=args.max_len, batch_size=args.batch_size, lr=args.lr, epochs=args.epochs,
                   patience=args.patience, budget_s=None if args.budget_min is None else args.budget_min * 60,
                   seed=args.seed, device=args.device, progress=not args.quiet, contract=args.contract)
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


def _tune(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.offline.tune import TuneJob, plot_trials, run_tune, train_command

    job = TuneJob(model=args.model, dataset=args.dataset, protocol=args.protocol, data_dir=settings.data_dir,
                  trials=args.trials, budget_s=args.budget_min * 60, patience=args.patience, seed=args.seed,
                  progress=not args.quiet)
    result = run_tune(job, say=print)
    best = result.best
    print(f"\n{args.model} on {result.described}: {len(result.trials)} trials in {result.seconds / 60:.1f} min; best "
          f"validation NDCG@10 {best['value']:.4f} (trial {best['number'] + 1}, {best['seconds']:.0f}s)")
    print(f"train and test it: {train_command(job, best)}")
    default_json = settings.home / "tune" / f"{args.model}-{args.dataset}-{args.protocol}.json"
    json_path = Path(args.json) if args.json else default_json
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps({"model": args.model, "dataset": args.dataset, "protocol": args.protocol,
                                     "described": result.described, "budget_s_per_trial": job.budget_s,
                                     "seconds": round(result.seconds, 1), "trials": result.trials, "best": best,
                                     "train_command": train_command(job, best)}, indent=2) + "\n")
    print(f"wrote {json_path} and {plot_trials(result, json_path.with_suffix('.png'), args.model)}")
    return 0


def _train_ranker(args: argparse.Namespace, settings: Settings) -> int:
    from streamrec.offline.assemble import DEFAULT_SOURCES, PipelineSpec
    from streamrec.offline.ranker_fit import RankerConfig
    from streamrec.offline.ranker_job import (
        RankerJob,
        format_architectures,
        format_report,
        plot_report,
        run_ranker_job,
    )

    sources = tuple(dict.fromkeys(n.strip() for n in args.sources.split(",") if n.strip())) or DEFAULT_SOURCES
    archs = RANKER_ARCHS if args.arch == "all" else (args.arch,)
    spec = PipelineSpec(sources=sources, n_per_source=args.n, registry=settings.registry,
                        ranker=RankerConfig(arch=archs[0], loss=args.loss, epochs=args.epochs, seed=args.seed))
    job = RankerJob(dataset=args.dataset, protocol=args.protocol, data_dir=settings.data_dir, spec=spec,
                    ablation=not args.no_ablation, publish=not args.no_publish, archs=archs, choose=args.publish)
    done = run_ranker_job(job, progress=not args.quiet)
    print(format_report(done.described, done.result))
    if done.result.architectures:
        print(format_architectures(done.result.architectures, done.result.ranker_fit.arch))
    if done.version_dir is not None:
        print(f"published {done.version_dir} (CURRENT); pipeline test NDCG@10 with the ONNX ranker "
              f"{done.onnx_test['NDCG@10']:.4f}, of the release as served (loaded from its artifacts) "
              f"{done.served_test['NDCG@10']:.4f}")
        if done.retrieval_test:
            print(f"the release as served through the item indexes of its session-contract models (every catalogue "
                  f"size): NDCG@10 {done.retrieval_test['NDCG@10']:.4f}, "
                  f"{done.retrieval_test['NDCG@10'] - done.served_test['NDCG@10']:+.4f} against full scores")
    default_json = settings.home / "eval" / f"pipeline-{args.dataset}-{args.protocol}.json"
    json_path = Path(args.json) if args.json else default_json
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(done.report, indent=2, default=str) + "\n")
    plot = plot_report(done.result, json_path.with_suffix(".png"), done.described)
    print(f"wrote {json_path} and {plot}")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("evaluate", help="fit baseline models and evaluate them offline on MovieLens",
                       description="Split a MovieLens log with protocol A (loo: leave-one-out per user, history "
                       "excluded) or B (session: sessions at inactivity gaps, last days as test, every next item "
                       "predicted), fit each model on the training part, rank the full catalogue for every case, "
                       "and print a table; also writes JSON and a PNG bar chart.")
    p.add_argument("--dataset", choices=MOVIELENS, default=DEFAULT_DATASET, help=f"default {DEFAULT_DATASET}")
    p.add_argument("--protocol", choices=("loo", "session"), default="loo", help="default loo")
    p.add_argument("--models", required=True, metavar="NAMES",
                   help="comma-separated: random, pop, itemknn, sknn, vsknn, mf, content, sasrec, gru4rec, bert4rec, "
                   "srgnn, neumf, autorec, lightgcn (fixed epochs; `streamrec train` early-stops them), pipeline "
                   "(neural sources from the registry)")
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
    add_registry_option(p, help="model registry of the pipeline's neural sources (default STREAMREC_REGISTRY, "
                        "./models)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("train", help="train torch sequence models, evaluate them and export them as ONNX",
                       description="Split a MovieLens log with a protocol and, for each model in turn, train it with "
                       "early stopping on validation NDCG@10 (within a time budget if given), keep its best epoch, "
                       "report that epoch's test metrics, and publish model.onnx, manifest.json (with the training "
                       "history), vocab.json and curves.png (loss and validation NDCG@10 per epoch) as a new CURRENT "
                       "version in the registry; the published ONNX model is tested again. Runs on CUDA when "
                       "available. Defaults per model (--max-len, --batch-size, --lr): sasrec 200, 128, 0.002; "
                       "gru4rec 50, 64, 0.002; bert4rec 200, 128, 0.001; neumf 200, 128, 0.005; autorec 200, 128, "
                       "0.005; srgnn 50, 128, 0.003; lightgcn 200, 8192, 0.02 (its batches are BPR triples).")
    p.add_argument("--models", default="sasrec", metavar="NAMES",
                   help="comma-separated, trained in turn: sasrec, gru4rec, bert4rec, neumf, autorec, srgnn, lightgcn "
                   "(default sasrec)")
    p.add_argument("--dataset", choices=MOVIELENS, default=DEFAULT_DATASET, help=f"default {DEFAULT_DATASET}")
    p.add_argument("--protocol", choices=("loo", "session"), default="loo",
                   help="loo: leave-one-out per user (the SASRec and BERT4Rec literature); session: sessions cut at "
                   "one-hour gaps, the last days as validation and test (the GRU4Rec literature) (default loo)")
    p.add_argument("--budget-min", type=float, default=None, metavar="M",
                   help="wall-clock minutes of training and validation per model (default: no limit)")
    p.add_argument("--epochs", type=int, default=200, metavar="N", help="at most N epochs per model (default 200)")
    p.add_argument("--patience", type=int, default=10, metavar="N",
                   help="stop after N epochs without a better validation NDCG@10 (default 10)")
    p.add_argument("--max-len", type=int, default=None, metavar="L",
                   help="the longest history a model reads (default per model: see above)")
    p.add_argument("--set", action="append", default=[], metavar="MODEL.FIELD=VALUE",
                   help="override a field of a model's network config, repeatable: e.g. gru4rec.training=padded "
                   "gru4rec.hidden_size=128 gru4rec.n_layers=2 neumf.hidden=32,16 (see the config classes in "
                   "streamrec/models/)")
    p.add_argument("--batch-size", type=int, default=None, metavar="B",
                   help="mini-batch: sequences, GRU4Rec's parallel sessions or LightGCN's triples (default per "
                   "model: see above)")
    p.add_argument("--lr", type=float, default=None, metavar="LR",
                   help="learning rate (default per model: see above)")
    p.add_argument("--device", default=None, metavar="DEV",
                   help="torch device, e.g. cpu, cuda or cuda:1 (default: cuda when available, else cpu)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, batches, dropout and negatives (default 0)")
    p.add_argument("--contract", choices=("scores", "session"), default="scores",
                   help="what the published graph computes: scores of the whole catalogue, or (sasrec, gru4rec, "
                   "bert4rec) the session's vector, published with the item table and an index over it, which the "
                   "server searches above STREAMREC_RETRIEVAL_THRESHOLD items (default scores)")
    add_registry_option(p)
    p.add_argument("--no-publish", action="store_true",
                   help="train and test only: publish nothing, write the curves to $STREAMREC_HOME/train/")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train)

    p = sub.add_parser("tune", help="search a sequence model's settings on validation (Optuna), print the best",
                       description="Train the model once per trial, each with settings Optuna's TPE sampler proposes "
                       "(network fields, learning rate, batch), early-stopping on validation NDCG@10 within a budget "
                       "per trial, exactly as `streamrec train` trains. Only the validation cases are read: the "
                       "search prints the `streamrec train` command that trains the best settings and tests them. "
                       "Writes every trial to JSON and a PNG of the search. Runs on CUDA when available.")
    p.add_argument("--model", choices=("gru4rec", "sasrec"), default="gru4rec", help="default gru4rec")
    p.add_argument("--dataset", choices=MOVIELENS, default=DEFAULT_DATASET, help=f"default {DEFAULT_DATASET}")
    p.add_argument("--protocol", choices=("loo", "session"), default="loo", help="default loo")
    p.add_argument("--trials", type=int, default=10, metavar="N", help="default 10")
    p.add_argument("--budget-min", type=float, default=5.0, metavar="M",
                   help="wall-clock minutes of training and validation per trial (default 5)")
    p.add_argument("--patience", type=int, default=5, metavar="N",
                   help="stop a trial after N epochs without a better validation NDCG@10 (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampler and of every trial (default 0)")
    p.add_argument("--json", metavar="PATH", help="default $STREAMREC_HOME/tune/MODEL-DATASET-PROTOCOL.json")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_tune)

    p = sub.add_parser("train-ranker", help="train the ranker, compare the pipeline with its members, publish",
                       description="Fit or load every candidate generator for a split (neural ones from the registry, "
                       "trained on the same split by `streamrec train`), build candidate lists on the validation part, "
                       "train the ranker there (DeepFM, or --arch), and report test metrics of each generator, the "
                       "pipeline, plain score fusion and the pipeline without each source, plus the candidates' recall "
                       "at N = 50, 100 and 200. Publishes the ranker as a new CURRENT `deepfm` version (the registry's "
                       "ranker slot, whatever the network; its manifest records the architecture); writes JSON and a "
                       "PNG.")
    p.add_argument("--dataset", choices=MOVIELENS, default=DEFAULT_DATASET, help=f"default {DEFAULT_DATASET}")
    p.add_argument("--protocol", choices=("loo", "session"), default="loo", help="default loo")
    p.add_argument("--sources", default="", metavar="NAMES",
                   help="comma-separated generators (default sasrec,gru4rec,bert4rec,itemknn,vsknn,mf,content,pop)")
    p.add_argument("--n", type=int, default=50, metavar="N", help="candidates per source (default 50)")
    p.add_argument("--loss", choices=("listwise", "bce"), default="listwise", help="ranker loss (default listwise)")
    p.add_argument("--epochs", type=int, default=40, metavar="E", help="ranker epochs at most (default 40)")
    p.add_argument("--arch", choices=(*RANKER_ARCHS, "all"), default="deepfm",
                   help="the ranker network: deepfm (FM pairwise crosses plus an MLP on shared field vectors; "
                   "served folded), widedeep (a linear model plus an MLP), dcnv2 (explicit cross layers under an "
                   "MLP), dlrm (dot products of field vectors into an MLP), or all: each trained on the same lists "
                   "and seed, compared in a table (held-out and test metrics, parameters, training time, latency), "
                   "the best held-out list NDCG@10 kept (default deepfm)")
    p.add_argument("--publish", choices=RANKER_ARCHS, default=None, metavar="ARCH",
                   help="with --arch all: keep and publish this architecture rather than the best held-out one")
    add_registry_option(p)
    p.add_argument("--no-ablation", action="store_true", help="only the full pipeline (no fusion or drop-one runs)")
    p.add_argument("--no-publish", action="store_true", help="do not publish the ranker")
    p.add_argument("--json", metavar="PATH",
                   help="report path (default $STREAMREC_HOME/eval/pipeline-DATASET-PROTOCOL.json)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_train_ranker)
