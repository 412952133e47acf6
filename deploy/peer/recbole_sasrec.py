"""RecBole 1.2.1's SASRec within a wall-clock budget, on an atomic file written by streamrec.

Runs INSIDE the peer's own virtual environment (``deploy/peer/requirements.txt``); ``streamrec bench
peer`` creates that venv, writes the atomic file and calls this script with the settings of its
side (``streamrec/bench/peer.py``). Nothing here imports streamrec. It writes into ``--out``:

- ``cases.npz``, before training: RecBole's validation and test cases (users, targets, input
  windows, in our tokens), so streamrec can check the split and stop us early if it differs;
  then the line ``CASES_READY`` on stdout.
- ``test_scores.npz``: the best model's full-catalogue scores for every test case (one row per
  user, one column per item, column = our item index; column 0 is padding), for streamrec to rank
  with its own metrics, history excluded.
- ``result.json``: samples seen, epochs, seconds, why training stopped, RecBole's own test metrics
  (its full sort does not exclude the history for sequential models) and the versions.

The budget: ``BudgetTrainer`` ends an epoch at the first batch past the deadline (the step on that
batch is taken), the epoch is validated as usual, and ``fit``'s per-epoch callback ends training
once the deadline has passed. The best checkpoint (by validation NDCG@10) is then tested.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import recbole
import torch
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.sequential_recommender import SASRec
from recbole.trainer import Trainer
from recbole.utils import init_logger, init_seed

CASES_READY = "CASES_READY"
# RecBole 1.2.1 on pandas 2.x and torch 2.x: deprecation notices about its own calls, nothing to act on
warnings.filterwarnings("ignore", category=FutureWarning)
warnings.filterwarnings("ignore", message="Environment variable TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD detected")
PROGRESS_EVERY_S = 30.0


class BudgetSpent(Exception):
    """Raised by the per-epoch callback once the deadline has passed: ends ``Trainer.fit``."""


def say(message: str) -> None:
    print(message, flush=True)


class _UntilDeadline:
    """A training dataloader that ends after the first batch past ``trainer.deadline``.

    When the trainer asks for the next batch, it has taken its step on the previous one: that is
    when the batch is counted and the clock read. Everything else is the wrapped loader's.
    """

    def __init__(self, loader, trainer: BudgetTrainer, epoch_idx: int) -> None:
        self.loader, self.trainer, self.epoch_idx = loader, trainer, epoch_idx

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        return getattr(self.loader, name)

    def __iter__(self):
        t = self.trainer
        for batch in self.loader:
            yield batch
            t.samples += len(batch)
            now = time.monotonic()
            if now >= t.deadline:
                t.cut_short = True
                return
            if now - t.last_report >= PROGRESS_EVERY_S:
                t.last_report = now
                say(f"epoch {self.epoch_idx + 1}: {t.samples - t.samples_before_epoch:,}/{self.loader.sample_size:,} "
                    f"prefixes, {now - t.started:.0f}s of {t.budget_s:.0f}s")


class BudgetTrainer(Trainer):
    """RecBole's ``Trainer`` whose epochs end at the first batch past a wall-clock deadline."""

    def start_clock(self, budget_s: float) -> None:
        self.budget_s = budget_s
        self.started = self.last_report = time.monotonic()
        self.deadline = self.started + budget_s
        self.samples = self.samples_before_epoch = 0
        self.epochs_started = 0
        self.cut_short = False
        self.best_score, self.best_epoch = -np.inf, 0

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        self.epochs_started += 1
        self.samples_before_epoch = self.samples
        loss = super()._train_epoch(_UntilDeadline(train_data, self, epoch_idx), epoch_idx, loss_func, show_progress)
        done = self.samples - self.samples_before_epoch
        say(f"epoch {epoch_idx + 1}: trained on {done:,}/{train_data.sample_size:,} prefixes"
            f"{' (budget spent)' if self.cut_short else ''}, loss {loss / max(1, -(-done // train_data.step)):.4f}, "
            f"{time.monotonic() - self.started:.0f}s; validating")
        return loss

    def stop_when_spent(self, epoch_idx: int, valid_score: float) -> None:
        say(f"epoch {epoch_idx + 1}: validation NDCG@10 {valid_score:.4f} (RecBole's evaluator), "
            f"{time.monotonic() - self.started:.0f}s")
        if valid_score >= self.best_score:  # RecBole's own rule for a new best (and checkpoint)
            self.best_score, self.best_epoch = valid_score, epoch_idx + 1
        if time.monotonic() >= self.deadline:
            raise BudgetSpent


def recbole_config(args: argparse.Namespace) -> dict:
    """Settings that make RecBole's leave-one-out reproduce streamrec's split, and SASRec comparable."""
    return {
        "data_path": str(args.data_path),
        "checkpoint_dir": str(args.out / "saved"),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        # keep every user and item: no interaction-count or value filters, no de-duplication
        "user_inter_num_interval": "[0,inf)",
        "item_inter_num_interval": "[0,inf)",
        "filter_inter_by_user_or_item": False,
        "val_interval": None,
        "rm_dup_inter": None,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "MAX_ITEM_LIST_LENGTH": args.max_len,
        "metrics": ["NDCG", "Hit"],
        "topk": [10, 20],
        "valid_metric": "NDCG@10",
        "loss_type": "CE",
        "train_neg_sample_args": None,
        "hidden_size": args.hidden,
        "inner_size": args.hidden,  # the paper's and streamrec's feed-forward width (RecBole's default is 256)
        "n_layers": args.layers,
        "n_heads": args.heads,
        "hidden_dropout_prob": args.dropout,
        "attn_dropout_prob": args.dropout,
        "hidden_act": "gelu",
        "initializer_range": 0.02,
        "learning_rate": args.lr,
        "train_batch_size": args.batch_size,
        "eval_batch_size": args.eval_batch_size,
        "epochs": args.epochs,
        # RecBole stops once `stopping_step` is exceeded; streamrec after `patience` stale epochs
        "stopping_step": args.patience - 1,
        "eval_step": 1,
        "seed": args.seed,
        "reproducibility": True,
        "state": "INFO",  # into RecBole's log file; the console handler is raised to WARNING below
        "show_progress": False,
        "worker": 0,
        "save_dataset": False,
        "save_dataloaders": False,
        "log_wandb": False,
    }


def write_cases(path: Path, dataset, parts: dict, train_samples: int) -> None:
    """RecBole's cases of each part as our tokens (ints), and its number of training prefixes."""
    uid, iid = dataset.uid_field, dataset.iid_field
    user_tokens = dataset.field2id_token[uid]
    item_tokens = _item_tokens(dataset)
    arrays = {"train_samples": np.array(train_samples)}
    for part, ds in parts.items():
        feat = ds.inter_feat
        lengths = feat[dataset.item_list_length_field].numpy().astype(np.int64)
        windows = item_tokens[feat[dataset.item_id_list_field].numpy()]  # padding 0 -> 0
        arrays |= {f"{part}_users": user_tokens[feat[uid].numpy()].astype(str),
                   f"{part}_targets": item_tokens[feat[iid].numpy()],
                   f"{part}_windows": windows, f"{part}_lengths": lengths}
    _save_npz(path, **arrays)


def _item_tokens(dataset) -> np.ndarray:
    """RecBole's internal item id -> our item index (its tokens); its padding id 0 -> 0."""
    tokens = dataset.field2id_token[dataset.iid_field]
    return np.array([0] + [int(t) for t in tokens[1:]], dtype=np.int64)


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


@torch.no_grad()
def test_scores(model, test_data, dataset) -> tuple[np.ndarray, np.ndarray]:
    """``(users, scores)``: full-catalogue scores per test case, columns in our item indices."""
    item_tokens = _item_tokens(dataset)
    user_tokens = dataset.field2id_token[dataset.uid_field]
    n_ours = int(item_tokens.max())
    model.eval()
    users, rows = [], []
    for interaction, _, _, _ in test_data:
        scores = model.full_sort_predict(interaction.to(model.device)).float().cpu().numpy()  # (B, RecBole items)
        out = np.full((len(scores), n_ours + 1), -np.inf, dtype=np.float32)
        out[:, item_tokens[1:]] = scores[:, 1:]
        rows.append(out)
        users.append(user_tokens[interaction[dataset.uid_field].cpu().numpy()].astype(str))
    return np.concatenate(users), np.concatenate(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-path", type=Path, required=True, help="folder holding <dataset>/<dataset>.inter")
    p.add_argument("--dataset", required=True, help="the atomic files' name (not one RecBole ships a preset for)")
    p.add_argument("--out", type=Path, required=True, help="where to write cases.npz, test_scores.npz, result.json")
    p.add_argument("--budget-min", type=float, required=True, help="wall-clock training minutes")
    p.add_argument("--threads", type=int, required=True, help="torch intra-op threads")
    p.add_argument("--max-len", type=int, default=50, help="MAX_ITEM_LIST_LENGTH")
    p.add_argument("--batch-size", type=int, default=512, help="training prefixes per batch")
    p.add_argument("--eval-batch-size", type=int, default=512, help="cases per full-sort evaluation batch")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's learning rate")
    p.add_argument("--epochs", type=int, default=200, help="at most this many epochs")
    p.add_argument("--patience", type=int, default=10, help="stop after this many epochs without a better validation")
    p.add_argument("--hidden", type=int, default=64, help="hidden size (and feed-forward size)")
    p.add_argument("--layers", type=int, default=2, help="transformer layers")
    p.add_argument("--heads", type=int, default=2, help="attention heads")
    p.add_argument("--dropout", type=float, default=0.2, help="hidden and attention dropout")
    p.add_argument("--seed", type=int, default=0, help="RecBole's seed")
    args = p.parse_args(argv)
    sys.argv = sys.argv[:1]  # RecBole's Config reads `--key=value` settings from the command line too
    # torch.load reads it when called: without it RecBole cannot reload its best checkpoint
    # (torch's weights_only default; seen with RecBole 1.2.1 and torch 2.13, 2026-11-26)
    os.environ.setdefault("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(args.threads)
    begun = time.monotonic()

    config = Config(model="SASRec", dataset=args.dataset, config_dict=recbole_config(args))
    init_seed(config["seed"], config["reproducibility"])
    init_logger(config)
    for handler in logging.getLogger().handlers:  # the file keeps INFO; the console only warnings
        if type(handler) is logging.StreamHandler:
            handler.setLevel(logging.WARNING)
    say(f"RecBole {recbole.__version__}, torch {torch.__version__} on {config['device']}, "
        f"{torch.get_num_threads()} thread(s); building the dataset (one sample per prefix)")
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    write_cases(args.out / "cases.npz", dataset, {"valid": valid_data._dataset, "test": test_data._dataset},
                train_data.sample_size)
    say(CASES_READY)
    say(f"{dataset.user_num - 1:,} users, {dataset.item_num - 1:,} items, {train_data.sample_size:,} training "
        f"prefixes, {len(valid_data._dataset):,} validation and {len(test_data._dataset):,} test cases; "
        f"ready after {time.monotonic() - begun:.0f}s")

    init_seed(config["seed"], config["reproducibility"])
    model = SASRec(config, train_data._dataset).to(config["device"])
    trainer = BudgetTrainer(config, model)
    trainer.start_clock(args.budget_min * 60)
    stopped = "epochs"
    try:
        trainer.fit(train_data, valid_data, saved=True, show_progress=False, callback_fn=trainer.stop_when_spent)
        if trainer.epochs_started < config["epochs"]:
            stopped = "patience"
    except BudgetSpent:
        stopped = "budget"
    train_s = time.monotonic() - trainer.started
    say(f"training stopped ({stopped}) after {train_s:.0f}s; testing the best checkpoint")

    own = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    users, scores = test_scores(trainer.model, test_data, dataset)
    _save_npz(args.out / "test_scores.npz", users=users, scores=scores)
    result = {
        "samples": trainer.samples,
        "samples_per_epoch": train_data.sample_size,
        "epochs_started": trainer.epochs_started,
        "best_epoch": trainer.best_epoch,
        "stopped": stopped,
        "train_s": round(train_s, 1),
        "total_s": round(time.monotonic() - begun, 1),
        "recbole_own_test": {k: float(v) for k, v in own.items()},
        "best_valid": {k: float(v) for k, v in (trainer.best_valid_result or {}).items()},
        "device": str(config["device"]),
        "threads": torch.get_num_threads(),
        "versions": {"recbole": recbole.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": sys.version.split()[0]},
        "config": {k: v for k, v in recbole_config(args).items() if k not in ("data_path", "checkpoint_dir")},
    }
    (args.out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    say(f"done in {time.monotonic() - begun:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
