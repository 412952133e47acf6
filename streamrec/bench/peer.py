"""Side by side with a peer: RecBole 1.2.1's SASRec and ours, on the identical split, at an equal budget.

There is no GPU here and RecBole costs about 23 minutes per ML-1M epoch at length 50 on two cores
(23.4 min at batch 512, peak 4 GB: measured on this 2-core, 24 GiB machine with torch's CPU build,
2026-11-26), so the two sides are compared at an equal, fixed wall-clock training budget, one after
the other, with the same torch thread count. The pieces, each with one job:

- ``ensure_peer_venv``: RecBole lives in its own virtual environment (its pins conflict with ours),
  created from ``deploy/peer/requirements.txt`` under ``.cache/peer-recbole/`` and stamped.
- ``write_atomic``: our protocol-A split as a RecBole ``.inter`` file. Each user's events get the
  synthetic timestamps 0, 1, 2, ... in our sequence order, so RecBole's leave-one-out
  (``LS: valid_and_test``, ``order: TO``, ``group_by: user``) cuts exactly where we cut.
- ``check_split``: proves it: RecBole's validation and test cases, mapped back to our ids, equal
  ours user by user (target and model input), and its training samples number what ours imply.
- ``run_peer``: ``deploy/peer/recbole_sasrec.py`` in the peer's venv trains within the budget and
  returns full-catalogue test scores; ``peer_test_metrics`` ranks them, history excluded, through
  the evaluation code our model goes through (``evaluate_rows``). RecBole's own evaluator does not
  exclude the history for sequential models (``FullSortEvalDataLoader`` passes no history index
  for them), so its figures are kept beside ours only as a cross-check.
- ``run_ours``: our SASRec through the shared training loop and ``evaluate``.

Each peer run keeps its atomic file, logs, checkpoint and scores under ``.cache/peer-recbole/runs/``.

Progress goes to a ``say`` callback (the CLI passes ``print``); the library itself only logs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from streamrec.data.names import DEFAULT_DATASET, DatasetName
from streamrec.errors import ConfigError, DataError, PeerError
from streamrec.eval.protocols import Cases, Split

__all__ = [
    "CUTOFFS",
    "DRIVER",
    "PEER_REQUIREMENTS",
    "PeerBenchConfig",
    "SideResult",
    "SplitCheck",
    "atomic_rows",
    "check_split",
    "ensure_peer_venv",
    "expected_cases",
    "format_table",
    "peer_test_metrics",
    "protocol_text",
    "run_ours",
    "run_peer",
    "run_peer_bench",
    "write_atomic",
]

logger = logging.getLogger(__name__)

Side = Literal["ours", "peer"]
Say = Callable[[str], None]

_DEPLOY: Final = Path(__file__).resolve().parents[2] / "deploy" / "peer"
DRIVER: Final = _DEPLOY / "recbole_sasrec.py"
PEER_REQUIREMENTS: Final = _DEPLOY / "requirements.txt"
CUTOFFS: Final = (10, 20)
REPORTED: Final = ("NDCG@10", "HR@10", "NDCG@20", "HR@20")
#: RecBole 1.2.1 pins ray<=2.6.3, whose wheels exist for CPython 3.8 .. 3.11 only.
_PEER_PYTHONS: Final = ((3, 8), (3, 11))
_CASES_READY: Final = "CASES_READY"  # the driver's line once cases.npz is written, before it trains
_ANSI: Final = re.compile(r"\x1b\[[0-9;]*m")  # RecBole colours its console log


@dataclass(frozen=True, kw_only=True)
class PeerBenchConfig:
    dataset: DatasetName = DEFAULT_DATASET
    max_len: int = 50
    budget_s: float = 600.0  # wall-clock training seconds per side (validation included, test not)
    threads: int = 2  # torch intra-op threads, the same on both sides
    seed: int = 0
    peer_batch_size: int = 512  # RecBole's prefixes per batch: 23.4 min per epoch at length 50 (2-core, 2026-11-26)
    sides: tuple[Side, ...] = ("peer", "ours")
    python: str = "python3"  # the interpreter that creates the peer's venv
    progress: bool = True

    def __post_init__(self) -> None:
        if self.max_len < 1 or self.threads < 1 or self.peer_batch_size < 1 or not self.budget_s > 0:
            raise ConfigError(f"max_len, threads, peer_batch_size and budget_s must be positive, got {self}")
        if not self.sides or set(self.sides) - {"ours", "peer"}:
            raise ConfigError(f"sides must name ours and/or peer, got {self.sides}")


# ---------------------------------------------------------------- the peer's virtual environment


def ensure_peer_venv(root: Path, *, python: str = "python3", requirements: Path = PEER_REQUIREMENTS,
                     say: Say = logger.info) -> Path:
    """The interpreter of the peer's venv ``root/venv``, created first unless its stamp matches.

    Idempotent: the stamp records a digest of ``requirements`` and the interpreter's version, so an
    edit to either rebuilds the venv, and an install that failed half-way (no stamp) starts over.
    pip's output goes to ``root/install.log``; ``root/venv/freeze.txt`` records what was installed.
    """
    venv = root / "venv"
    peer_python, stamp = venv / "bin" / "python", venv / ".streamrec-stamp"
    version = _python_version(python)
    digest = hashlib.sha256(Path(requirements).read_bytes()).hexdigest()[:16]
    want = f"requirements {digest}\npython {version[0]}.{version[1]}\n"
    if peer_python.exists() and stamp.is_file() and stamp.read_text() == want:
        return peer_python
    if not _PEER_PYTHONS[0] <= version <= _PEER_PYTHONS[1]:
        raise ConfigError(f"{python} is Python {version[0]}.{version[1]}, but RecBole 1.2.1 needs ray<=2.6.3, "
                          f"which has wheels for Python {_PEER_PYTHONS[0][0]}.{_PEER_PYTHONS[0][1]} to "
                          f"{_PEER_PYTHONS[1][0]}.{_PEER_PYTHONS[1][1]} only; pass --python python3.11")
    root.mkdir(parents=True, exist_ok=True)
    log = root / "install.log"
    started = time.monotonic()
    say(f"peer: creating RecBole's virtual environment {venv} with {python} "
        f"(Python {version[0]}.{version[1]}); pip's output goes to {log}")
    with log.open("w") as out:
        _step([python, "-m", "venv", "--clear", str(venv)], out, "python -m venv", log)
        say(f"peer: pip install -r {requirements} (torch, RecBole 1.2.1 and their dependencies; minutes "
            "when pip's cache is cold)")
        _step([str(peer_python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off",
               "-r", str(requirements)], out, "pip install", log)
        say("peer: checking that RecBole imports")
        probe = ("import numpy, pandas, torch, recbole; from recbole.trainer import Trainer; "
                 "from recbole.model.sequential_recommender import SASRec; "
                 "print('recbole', recbole.__version__, 'torch', torch.__version__, 'numpy', numpy.__version__, "
                 "'pandas', pandas.__version__)")
        _step([str(peer_python), "-c", probe], out, "importing RecBole", log, env=_peer_env())
        freeze = subprocess.run([str(peer_python), "-m", "pip", "freeze", "--disable-pip-version-check"],
                                capture_output=True, text=True, check=False)
        (venv / "freeze.txt").write_text(freeze.stdout)
    stamp.write_text(want)
    say(f"peer: virtual environment ready in {time.monotonic() - started:.0f}s")
    return peer_python


def _python_version(python: str) -> tuple[int, int]:
    if shutil.which(python) is None:
        raise ConfigError(f"no interpreter {python!r} on PATH to create the peer's venv; pass --python")
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                         text=True, check=False)
    if out.returncode != 0:
        raise ConfigError(f"{python} does not run: {out.stderr.strip()[-300:]}")
    major, minor = (int(v) for v in out.stdout.split())
    return major, minor


def _step(cmd: Sequence[str], out: Any, what: str, log: Path, env: Mapping[str, str] | None = None) -> None:
    out.write(f"$ {' '.join(cmd)}\n")
    out.flush()
    proc = subprocess.run(list(cmd), stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    if proc.returncode != 0:
        out.flush()
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise PeerError(f"{what} failed (exit {proc.returncode}); the end of {log}:\n{tail}\n"
                        "Fix the cause (network access to PyPI, disk space) and run the bench again: "
                        "the venv is rebuilt from scratch.")


def _peer_env(threads: int | None = None) -> dict[str, str]:
    """The peer's environment: RecBole reloads its best checkpoint with ``torch.load``, which fails
    on torch's ``weights_only`` default without this variable (seen with RecBole 1.2.1 and torch 2.13,
    2026-11-26)."""
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("PYTHONPATH", None)  # nothing of ours leaks into the peer's interpreter
    if threads is not None:
        env |= {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    return env


# ---------------------------------------------------------------- the identical split


def atomic_rows(split: Split) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Users, items and synthetic timestamps of every interaction behind a protocol-A ``split``.

    Each user's full sequence is rebuilt from the split (the test history plus the test target;
    the training sequence for users too short to evaluate) and numbered 0, 1, 2, ... in our order,
    so ties in the real timestamps can never reorder it. Items are our indices (1..n_items).
    Raises ``DataError`` if the split cannot be rebuilt, e.g. when protocol A dropped cases whose
    target repeats an earlier item (RecBole would keep them, so the splits could not be identical).
    """
    counts = [split.summary.get(f"{p}_cases_dropped_target_in_history") for p in ("validation", "test")]
    dropped = sum(c for c in counts if isinstance(c, int))
    if split.summary.get("protocol") != "loo" or dropped:
        raise DataError("the RecBole comparison needs a leave-one-out split that dropped no case "
                        f"(protocol {split.summary.get('protocol')!r}, {dropped} case(s) dropped)")
    test = {u: i for i, u in enumerate(split.test.users)}
    validation = {u: i for i, u in enumerate(split.validation.users)}
    users: list[np.ndarray] = []
    items: list[np.ndarray] = []
    for user, train in zip(split.train_users, split.train.sequences, strict=True):
        _check_token(user)
        if user in test:
            j = test[user]
            full = np.append(split.test.histories[j], split.test.targets[j])
            v = validation.get(user)
            if v is None or split.validation.targets[v] != full[-2] or not np.array_equal(full[:-2], train):
                raise DataError(f"user {user!r}: training, validation and test parts do not form one sequence")
        else:
            full = np.asarray(train)
        users.append(np.full(len(full), user, dtype=object))
        items.append(np.asarray(full, dtype=np.int64))
    stamps = [np.arange(len(s), dtype=np.int64) for s in items]
    empty = np.zeros(0, dtype=np.int64)
    return (np.concatenate(users) if users else np.zeros(0, dtype=object),
            np.concatenate(items) if items else empty, np.concatenate(stamps) if stamps else empty)


def write_atomic(split: Split, path: Path) -> int:
    """Write ``atomic_rows(split)`` as RecBole's ``.inter`` atomic file; return the number of rows."""
    users, items, stamps = atomic_rows(split)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as out:
        out.write("user_id:token\titem_id:token\ttimestamp:float\n")
        out.writelines(f"{u}\t{i}\t{t}\n" for u, i, t in zip(users, items.tolist(), stamps.tolist(), strict=True))
    os.replace(tmp, path)
    return len(items)


def _check_token(user: object) -> None:
    if not isinstance(user, str) or not user or any(c in user for c in "\t\n\r"):
        raise DataError(f"user id {user!r} cannot be a RecBole token (empty, or holds a tab or a newline)")


@dataclass(frozen=True, eq=False)
class PeerCases:
    """RecBole's cases for one part, in tokens mapped back to ours: ``windows[i, :lengths[i]]`` is the
    model input (RecBole aligns it left and pads on the right), ``targets[i]`` the item to predict."""

    users: np.ndarray  # str (N,)
    targets: np.ndarray  # int64 (N,)
    windows: np.ndarray  # int64 (N, max_len)
    lengths: np.ndarray  # int64 (N,)

    @classmethod
    def from_npz(cls, data: Mapping[str, np.ndarray], part: str) -> PeerCases:
        return cls(np.asarray(data[f"{part}_users"]).astype(str), np.asarray(data[f"{part}_targets"], np.int64),
                   np.asarray(data[f"{part}_windows"], np.int64), np.asarray(data[f"{part}_lengths"], np.int64))


@dataclass(frozen=True)
class SplitCheck:
    validation_users: int
    test_users: int
    train_samples: int  # RecBole's training prefixes (one next-item target each)

    def describe(self) -> str:
        return (f"identical split: RecBole's {self.validation_users:,} validation and {self.test_users:,} test cases "
                f"equal ours user by user (target and input); {self.train_samples:,} training prefixes on both sides")


def expected_cases(cases: Cases, max_len: int) -> dict[str, tuple[int, tuple[int, ...]]]:
    """Our cases as RecBole should see them: user -> (target, the last ``max_len`` items of the history)."""
    out: dict[str, tuple[int, tuple[int, ...]]] = {}
    for user, history, target in zip(cases.users, cases.histories, cases.targets, strict=True):
        if user in out:
            raise DataError(f"user {user!r} has two cases in one part; leave-one-out gives one")
        out[str(user)] = (int(target), tuple(int(i) for i in history[max(0, len(history) - max_len):]))
    return out


def check_split(split: Split, validation: PeerCases, test: PeerCases, train_samples: int,
                max_len: int) -> SplitCheck:
    """Confirm that RecBole's validation and test cases equal ours for every user (same target, same
    input window) and that it trains on as many prefixes as our training sequences hold.

    Raises ``DataError`` naming the first differences.
    """
    problems: list[str] = []
    for part, ours, peer in (("validation", split.validation, validation), ("test", split.test, test)):
        want = expected_cases(ours, max_len)
        got = {str(u): (int(t), tuple(int(i) for i in w[:n]))
               for u, t, w, n in zip(peer.users, peer.targets, peer.windows, peer.lengths, strict=True)}
        if len(got) != len(peer.users):
            problems.append(f"{part}: RecBole has several cases for one user")
        only_ours, only_peer = sorted(want.keys() - got.keys()), sorted(got.keys() - want.keys())
        if only_ours or only_peer:
            problems.append(f"{part}: {len(only_ours)} user(s) only in ours (e.g. {only_ours[:3]}), "
                            f"{len(only_peer)} only in RecBole's (e.g. {only_peer[:3]})")
        differ = [u for u in sorted(want.keys() & got.keys()) if want[u] != got[u]]
        for u in differ[:3]:
            problems.append(f"{part}: user {u}: ours predicts {want[u][0]} from ...{list(want[u][1][-5:])}, "
                            f"RecBole {got[u][0]} from ...{list(got[u][1][-5:])}")
        if len(differ) > 3:
            problems.append(f"{part}: {len(differ) - 3} more user(s) differ")
    ours_train = int(sum(max(len(s) - 1, 0) for s in split.train.sequences))
    if train_samples != ours_train:
        problems.append(f"train: RecBole has {train_samples:,} training prefixes, our sequences hold {ours_train:,}")
    if problems:
        raise DataError("RecBole's split differs from ours:\n  " + "\n  ".join(problems))
    return SplitCheck(len(validation.users), len(test.users), train_samples)


def peer_test_metrics(scores: np.ndarray, score_users: Sequence[str], cases: Cases,
                      cutoffs: Sequence[int] = CUTOFFS) -> dict[str, dict[str, float]]:
    """Metrics of the peer's full-catalogue ``scores`` (row ``i`` for user ``score_users[i]``, column
    = our item index) on our ``cases``, through the evaluation code our model goes through: with the
    history excluded as ``cases`` says, and without (RecBole's own convention for sequential models).
    """
    from streamrec.eval.evaluate import evaluate_rows

    row = {str(u): i for i, u in enumerate(score_users)}
    missing = [u for u in cases.users if str(u) not in row]
    if missing:
        raise DataError(f"the peer scored no row for {len(missing)} test user(s), e.g. {missing[:3]}")
    rows = np.fromiter((row[str(u)] for u in cases.users), dtype=np.int64, count=len(cases))
    out: dict[str, dict[str, float]] = {}
    for key, variant in (("history_excluded", cases), ("history_not_excluded",
                                                        dataclasses.replace(cases, exclude_history=False))):
        result = evaluate_rows(lambda lo, hi: scores[rows[lo:hi]], variant, name="recbole", cutoffs=cutoffs,
                               progress=False)
        out[key] = {name: result[name] for k in sorted(cutoffs) for name in (f"NDCG@{k}", f"HR@{k}")}
    return out


# ---------------------------------------------------------------- the two sides


@dataclass
class SideResult:
    """One row of the table. ``samples``: training examples seen, a user's sequence for us (targets at
    every position) and one prefix for RecBole (one target); ``targets`` counts the next-item
    predictions the loss saw, which is the like-for-like figure. ``epochs`` may be a fraction."""

    model: str
    side: Side
    budget_s: float
    epochs: float
    samples: int
    targets: int
    batch_size: int
    test: dict[str, float]  # history excluded: the protocol of the table
    test_history_not_excluded: dict[str, float]
    stopped: str  # "budget", "patience" or "epochs"
    best_epoch: int
    train_s: float
    wall_s: float
    extra: dict[str, Any] = field(default_factory=dict)


def _train_config(config: PeerBenchConfig) -> Any:
    """Our training settings; the peer copies lr, epochs and patience from them."""
    from streamrec.train import TrainConfig

    return TrainConfig(budget_s=config.budget_s, seed=config.seed, progress=config.progress)


def _train_ours(model: Any, split: Split, config: PeerBenchConfig) -> tuple[int, Any]:
    """``(examples per epoch, TrainResult)``: the one call into the shared training loop."""
    from streamrec.train import sequence_examples, train

    examples = sequence_examples(split.train.sequences, config.max_len)
    return len(examples), train(model, examples, split.validation, _train_config(config))


def run_ours(config: PeerBenchConfig, split: Split, *, say: Say = logger.info) -> SideResult:
    """Our SASRec, trained by the shared loop within the budget and tested by ``evaluate``."""
    import torch

    from streamrec.eval.evaluate import evaluate
    from streamrec.models.sasrec import SASRec, SASRecConfig
    from streamrec.train import TorchSequenceRecommender, pick_device, seed_everything

    begun = time.monotonic()
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    seen = {"samples": 0, "targets": 0}

    def count(module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        # only training calls forward (validation and test call score); count what the loss sees
        targets = args[1] if len(args) > 1 else kwargs.get("targets")
        if module.training and targets is not None:
            seen["samples"] += int(targets.shape[0])
            seen["targets"] += int((targets > 0).sum())

    model_config = SASRecConfig(n_items=split.train.n_items, max_len=config.max_len)
    seed_everything(config.seed)  # the initial weights; the loop seeds again for dropout and shuffling
    model = SASRec(model_config)
    hook = model.register_forward_pre_hook(count, with_kwargs=True)
    try:
        say(f"ours: training SASRec for {config.budget_s / 60:g} min on {pick_device()} with "
            f"{torch.get_num_threads()} thread(s)")
        started = time.monotonic()
        per_epoch, result = _train_ours(model, split, config)
        train_s = time.monotonic() - started
        say(f"ours: stopped ({result.stopped}) after {train_s:.0f}s, best epoch {result.best_epoch}; testing")
        scorer = TorchSequenceRecommender.from_module(model, model_config.n_items, model_config.max_len, name="sasrec")
        test = evaluate(scorer, split.test, cutoffs=CUTOFFS, progress=config.progress)
        raw = evaluate(scorer, dataclasses.replace(split.test, exclude_history=False), cutoffs=CUTOFFS, progress=False)
    finally:
        hook.remove()
        torch.set_num_threads(threads)
    return SideResult(
        model="SASRec (streamrec)", side="ours", budget_s=config.budget_s,
        epochs=seen["samples"] / max(per_epoch, 1), samples=seen["samples"], targets=seen["targets"],
        batch_size=_train_config(config).batch_size, test={k: test[k] for k in REPORTED},
        test_history_not_excluded={k: raw[k] for k in REPORTED}, stopped=result.stopped,
        best_epoch=result.best_epoch, train_s=round(train_s, 1), wall_s=round(time.monotonic() - begun, 1),
        extra={"samples_per_epoch": per_epoch, "epochs_started": len(result.history),
               "best_validation": result.best_metrics},
    )


def run_peer(config: PeerBenchConfig, split: Split, root: Path, *,
             say: Say = logger.info) -> tuple[SideResult, SplitCheck]:
    """RecBole's SASRec via ``DRIVER`` in the peer's venv, on our split, within the budget.

    The driver writes its cases before it trains; they are checked at once (``check_split``), and
    a mismatch stops the driver. Its test scores are ranked by ``peer_test_metrics``.
    """
    from streamrec.models.sasrec import SASRecConfig

    begun = time.monotonic()
    peer_python = ensure_peer_venv(root, python=config.python, say=say)
    run_dir = root / "runs" / f"{config.dataset}-{time.strftime('%Y%m%d-%H%M%S')}"
    name = f"streamrec-{config.dataset}"  # not "ml-100k": RecBole would apply its preset for that name
    rows = write_atomic(split, run_dir / "data" / name / f"{name}.inter")
    say(f"peer: wrote {rows:,} interactions of our split as {run_dir / 'data' / name / (name + '.inter')}")
    model, train = SASRecConfig(n_items=split.train.n_items, max_len=config.max_len), _train_config(config)
    cmd = [str(peer_python), str(DRIVER), "--data-path", str(run_dir / "data"), "--dataset", name,
           "--out", str(run_dir / "out"), "--budget-min", str(config.budget_s / 60), "--threads", str(config.threads),
           "--max-len", str(config.max_len), "--batch-size", str(config.peer_batch_size),
           "--eval-batch-size", str(train.eval_batch_size), "--lr", str(train.lr), "--epochs", str(train.epochs),
           "--patience", str(train.patience), "--hidden", str(model.d_model), "--layers", str(model.n_layers),
           "--heads", str(model.n_heads), "--dropout", str(model.dropout), "--seed", str(config.seed)]
    say(f"peer: training RecBole's SASRec for {config.budget_s / 60:g} min (log: {run_dir / 'driver.log'})")
    check: SplitCheck | None = None
    tail: list[str] = []
    with (run_dir / "driver.log").open("w") as log, subprocess.Popen(
            cmd, cwd=run_dir, env=_peer_env(config.threads), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                tail = [*tail[-30:], line.rstrip()]
                if line.strip() == _CASES_READY:
                    with np.load(run_dir / "out" / "cases.npz") as cases:
                        check = check_split(split, PeerCases.from_npz(cases, "valid"), PeerCases.from_npz(cases, "test"),
                                            int(cases["train_samples"]), config.max_len)
                    say(f"peer: {check.describe()}")
                elif line.strip():
                    say(f"peer: {_ANSI.sub('', line.rstrip())}")
        except BaseException:
            proc.terminate()  # our own child: a split that differs, or Ctrl-C, ends it
            raise
    if proc.returncode != 0 or check is None:
        raise PeerError(f"the RecBole driver failed (exit {proc.returncode}); the end of {run_dir / 'driver.log'}:\n"
                        + "\n".join(tail[-15:]))
    result = json.loads((run_dir / "out" / "result.json").read_text())
    with np.load(run_dir / "out" / "test_scores.npz") as scored:
        test = peer_test_metrics(scored["scores"], scored["users"].astype(str), split.test)
    own = result["recbole_own_test"]
    return SideResult(
        model=f"SASRec (RecBole {result['versions']['recbole']})", side="peer", budget_s=config.budget_s,
        epochs=result["samples"] / max(result["samples_per_epoch"], 1), samples=result["samples"],
        targets=result["samples"], batch_size=config.peer_batch_size, test=test["history_excluded"],
        test_history_not_excluded=test["history_not_excluded"], stopped=result["stopped"],
        best_epoch=result["best_epoch"], train_s=result["train_s"], wall_s=round(time.monotonic() - begun, 1),
        extra={"recbole_own_test_history_not_excluded": {k.replace("hit", "HR").replace("ndcg", "NDCG"): v
                                                         for k, v in own.items()},
               "samples_per_epoch": result["samples_per_epoch"], "epochs_started": result["epochs_started"],
               "best_validation": result["best_valid"], "device": result["device"], "versions": result["versions"],
               "recbole_config": result["config"], "run_dir": str(run_dir)},
    ), check


# ---------------------------------------------------------------- the bench and its table


def protocol_text(dataset: str, split: Split) -> str:
    excluded = "history excluded" if split.test.exclude_history else "history not excluded"
    return f"{dataset.upper()}, leave-one-out, full catalogue, {excluded}"


def run_peer_bench(config: PeerBenchConfig, data_dir: Path, cache_dir: Path, *,
                   say: Say = logger.info) -> dict[str, Any]:
    """Both sides, one after the other, on one protocol-A split; returns the report as JSON-ready data.

    The peer's venv is made first, so a machine that cannot build it fails before any training.
    """
    from streamrec.data.datasets import load
    from streamrec.eval.protocols import LeaveOneOut
    from streamrec.eval.protocols import split as split_log
    from streamrec.train import pick_device

    root = cache_dir / "peer-recbole"
    if "peer" in config.sides:
        ensure_peer_venv(root, python=config.python, say=say)
    say(f"loading {config.dataset} and splitting it with protocol A (leave-one-out)")
    parts = split_log(load(config.dataset, data_dir), LeaveOneOut())
    rows: list[SideResult] = []
    check: SplitCheck | None = None
    for side in config.sides:
        if side == "peer":
            row, check = run_peer(config, parts, root, say=say)
        else:
            row = run_ours(config, parts, say=say)
        rows.append(row)
        say(f"{row.side}: test NDCG@10 {row.test['NDCG@10']:.4f}, HR@10 {row.test['HR@10']:.4f} "
            f"after {row.epochs:.2f} epoch(s)")
    train = _train_config(config)
    return {
        "bench": "peer",
        "protocol": protocol_text(config.dataset, parts),
        "dataset": config.dataset,
        "test_cases": len(parts.test),
        "n_items": parts.train.n_items,
        "budget": f"equal wall-clock training budget: {config.budget_s / 60:g} min per side, validation included, "
                  "test not; one side after the other",
        "budget_s": config.budget_s,
        "threads": config.threads,
        "device": str(pick_device()),
        "max_len": config.max_len,
        "settings": {"model": "SASRec, full cross-entropy, hidden 64, feed-forward 64, 2 layers, 2 heads, "
                              "dropout 0.2, Adam", "lr": train.lr, "patience": train.patience,
                     "batch_ours": f"{train.batch_size} user sequences", "batch_peer": f"{config.peer_batch_size} "
                     "prefixes", "seed": config.seed},
        "split_check": None if check is None else {**dataclasses.asdict(check), "identical": True},
        "rows": [dataclasses.asdict(r) for r in rows],
    }


def format_table(report: Mapping[str, Any]) -> str:
    """The report as the table people read, with the protocol and the budget beside it."""
    head = (f"{'model':24} {'side':4} {'budget':>7} {'epochs':>7} {'samples':>10} {'targets':>11} {'batch':>5} "
            f"{'NDCG@10':>7} {'HR@10':>7} {'NDCG@20':>7} {'HR@20':>7} {'train s':>7} {'wall s':>7}")
    lines = [(f"{report['protocol']} ({report['test_cases']:,} test users, {report['n_items']:,} items), "
              f"max length {report['max_len']}"),
             f"{report['budget']}; {report['threads']} torch thread(s) each, {report['device']}",
             head, "-" * len(head)]
    for r in report["rows"]:
        t = r["test"]
        budget = f"{r['budget_s'] / 60:g} min"
        lines.append(f"{r['model']:24} {r['side']:4} {budget:>7} {r['epochs']:>7.3f} {r['samples']:>10,} "
                     f"{r['targets']:>11,} {r['batch_size']:>5} {t['NDCG@10']:>7.4f} {t['HR@10']:>7.4f} "
                     f"{t['NDCG@20']:>7.4f} {t['HR@20']:>7.4f} {r['train_s']:>7.0f} {r['wall_s']:>7.0f}")
    lines.append("samples: training examples seen, a user's last max-length items for ours (a target at every "
                 "position), one prefix for RecBole (one target); targets: next-item predictions trained")
    for r in report["rows"]:
        raw = r["test_history_not_excluded"]
        note = (f"{r['side']}: stopped by {r['stopped']}, best epoch {r['best_epoch']}; history not excluded: "
                f"NDCG@10 {raw['NDCG@10']:.4f}, HR@10 {raw['HR@10']:.4f}")
        own = r["extra"].get("recbole_own_test_history_not_excluded")
        if own:
            note += (f" (RecBole's own evaluator, which never excludes it for sequential models: "
                     f"NDCG@10 {own['NDCG@10']:.4f}, HR@10 {own['HR@10']:.4f})")
        lines.append(note)
    if report["split_check"]:
        lines.append(SplitCheck(**{k: v for k, v in report["split_check"].items() if k != "identical"}).describe())
    return "\n".join(lines)
