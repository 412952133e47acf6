"""Helpers shared by the model tests and by the ranking tests built on them: tiny hand-made data,
the leave-last-out hold-out check, the cyclic overfitting check, the rankers' random features and the
cross they must learn, and the round trip of a fitted model through its exported arrays.

The hold-out check lives here rather than in ``streamrec.eval`` so these tests pin the models'
behaviour on their own: per user, the last item is held out, every model trains on all users'
remaining items, and HR@10 asks whether the held-out item is among the 10 best-scored items of
the whole catalogue with the user's own history excluded.

torch is imported inside the functions that need it: the tests of the count-based models import
this module too, and never touch torch otherwise.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from streamrec.models.base import Recommender, TrainData, top_k

if TYPE_CHECKING:
    import torch

    from streamrec.models.deepfm import DeepFMConfig, RankerConfig, RankLoss

__all__ = [
    "BAD_CONFIGS",
    "LIST",
    "N_ITEMS",
    "N_VALUES",
    "SIZES",
    "Batch",
    "D",
    "G",
    "HoldOut",
    "MakeData",
    "assert_onnx_parity",
    "assert_round_trip",
    "assert_sequence_onnx_parity",
    "config",
    "cyclic_fit",
    "cyclic_sequences",
    "fit_cross",
    "frozen",
    "hit_rates_after_training",
    "matching_lists",
    "mixed_data",
    "numeric_state",
    "random_features",
    "round_trip_histories",
    "tiny_items",
]

MakeData = Callable[..., TrainData]
"""The ``make_data`` fixture's type: ``make_data([[1, 2], [2, 3]], n_items=5, timestamps=..., items=...)``."""


def tiny_items(
    n_items: int, genres: Sequence[str] | None = None, years: Sequence[int | None] | None = None
) -> pd.DataFrame:
    genres = list(genres) if genres is not None else ["Drama"] * n_items
    years = list(years) if years is not None else [1990] * n_items
    return pd.DataFrame(
        {
            "item_id": [f"i{i}" for i in range(1, n_items + 1)],
            "item_idx": np.arange(1, n_items + 1, dtype=np.int32),
            "title": [f"Movie {i}" for i in range(1, n_items + 1)],
            "year": pd.array(years, dtype="Int16"),
            "genres": genres,
        }
    )


@dataclass(frozen=True)
class HoldOut:
    train: TrainData
    histories: list[np.ndarray]
    targets: np.ndarray

    def hit_rate(self, model: Recommender, k: int = 10, batch: int = 256) -> float:
        hits = 0
        for lo in range(0, len(self.targets), batch):
            hist = self.histories[lo : lo + batch]
            idx, _ = top_k(model.score(hist), k, hist)
            hits += int((idx == self.targets[lo : lo + batch, None]).any(axis=1).sum())
        return hits / len(self.targets)

    def random_hit_rate(self, k: int = 10) -> float:
        """The expected HR@k of uniformly random scores: k over the number of candidates, averaged."""
        candidates = np.array([self.train.n_items - len(np.unique(h)) for h in self.histories], dtype=np.float64)
        return float(np.mean(np.minimum(k, candidates) / candidates))


def hit_rates_after_training(model: Any, steps: Any, holdout: HoldOut, epochs: int, batch_size: int,
                             lr: float) -> tuple[float, float]:
    """Train the torch ``model`` (built under ``seed_everything(0)`` by the caller) with ``steps`` (an epoch strategy
    or ``Examples``) for a fixed number of epochs, not a time budget, so that the result does not depend on how busy
    the machine is; return its HR@10 on ``holdout`` and MostPopular's."""
    from streamrec.models.popularity import MostPopular
    from streamrec.train import TorchSequenceRecommender, TrainConfig, train

    train(model, steps, None, TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, progress=False))
    scorer = TorchSequenceRecommender.from_module(model, model.config.n_items, model.config.max_len)
    return holdout.hit_rate(scorer), holdout.hit_rate(MostPopular().fit(holdout.train))


# ---------------------------------------------------------------- padded-batch sequence models

N_ITEMS = 40


def cyclic_sequences(n: int, length: int, seed: int = 0) -> list[np.ndarray]:
    """Every item is followed by the next one (modulo the catalogue): a pattern SASRec must learn exactly."""
    starts = np.random.default_rng(seed).integers(0, N_ITEMS, size=n)
    return [((s + np.arange(length)) % N_ITEMS + 1).astype(np.int64) for s in starts]


def cyclic_fit(model, sequences: Sequence[np.ndarray], n_items: int, epochs: int) -> tuple[list[float], float, float]:  # type: ignore[no-untyped-def]
    """Train a padded-batch model (SASRec, BERT4Rec) on ``sequences`` and return its epoch losses and its
    HR@1 and HR@10 at predicting each sequence's last item from the rest: the overfitting check."""
    from streamrec.train import TorchSequenceRecommender, TrainConfig, sequence_examples, train

    max_len = model.config.max_len
    result = train(model, sequence_examples(sequences, max_len), None,
                   TrainConfig(epochs=epochs, batch_size=16, lr=5e-3, progress=False))
    scorer = TorchSequenceRecommender.from_module(model, n_items, max_len)
    prefixes, targets = [s[:-1] for s in sequences], np.array([s[-1] for s in sequences])
    top, _ = top_k(scorer.score(prefixes), 10)
    return ([r.loss for r in result.history], float((top[:, 0] == targets).mean()),
            float((top == targets[:, None]).any(axis=1).mean()))


def parity_histories(seed: int, max_len: int) -> list[np.ndarray]:
    """Random and cyclic histories, one longer than ``max_len``, one empty, one with padding and an unknown id."""
    rng = np.random.default_rng(seed)
    random = [rng.integers(1, N_ITEMS + 1, size=n) for n in (1, 3, max_len, 30)]
    real_looking = [((s + np.arange(n)) % N_ITEMS + 1) for s, n in zip(rng.integers(0, N_ITEMS, 4), (2, 5, 9, 12))]
    repeats = np.array([3, 4, 3, 4, 3, 5])
    return [*random, *real_looking, repeats, np.array([], dtype=np.int64), np.array([0, 7, 999, 8])]


def assert_sequence_onnx_parity(model: Any, name: str, registry: Path) -> Path:
    """Publish the torch sequence ``model`` (``N_ITEMS`` items) to ``registry``, load its ONNX graph, and check
    that it scores histories as torch does, within 1e-4, with the same top 10; and the graph itself at batch
    sizes and lengths other than the traced ones. Returns the published version's directory."""
    import torch

    from streamrec.export import load_onnx, publish
    from streamrec.train import TorchSequenceRecommender

    config = model.config
    version = publish(model, config, name=name, vocab=["<pad>", *(f"m{i}" for i in range(1, N_ITEMS + 1))],
                      dataset="synthetic", protocol={"protocol": "loo"}, metrics={}, registry=registry)
    served = load_onnx(version)
    assert served.manifest["model_class"] == type(model).__name__
    reference = TorchSequenceRecommender.from_module(model, N_ITEMS, config.max_len)
    for seed in range(3):
        hist = parity_histories(seed, config.max_len)
        ours, theirs = served.score(hist), reference.score(hist)
        assert np.isneginf(ours[:, 0]).all() and ours[:, 1:].std() > 0
        np.testing.assert_allclose(ours[:, 1:], theirs[:, 1:], atol=1e-4, rtol=1e-5)
        np.testing.assert_array_equal(top_k(ours, 10)[0], top_k(theirs, 10)[0])
    rng = np.random.default_rng(0)
    model.eval()
    for batch, length in ((1, 1), (5, 4), (9, config.max_len)):
        seq = rng.integers(1, N_ITEMS + 1, size=(batch, length))
        seq[np.arange(length)[None, :] < rng.integers(0, length, size=(batch, 1))] = 0  # random left padding
        got = served.session.run(["scores"], {"seq": seq})[0]
        with torch.no_grad():
            want = model.score(torch.from_numpy(seq)).numpy()
        assert got.shape == (batch, N_ITEMS + 1)
        np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-5)
    return version


# ---------------------------------------------------------------- rankers (DeepFM and the networks beside it)

SIZES = (3707, 12, 4, 6, 10)
G, D = 18, 30
Batch = tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]


#: changes to ``config()`` that every ranker config refuses, and a word its error names
BAD_CONFIGS: list[tuple[dict[str, Any], str]] = [
    ({"sparse_sizes": ()}, "sparse_sizes"),
    ({"sparse_sizes": (5, 0)}, "sparse_sizes"),
    ({"n_multi": 0}, "n_multi"),
    ({"n_dense": 0}, "n_dense"),
    ({"d_embed": 0}, "d_embed"),
    ({"hidden": (64, 0)}, "hidden"),
    ({"dropout": 1.0}, "dropout"),
    ({"dense_mean": (0.0,) * (D - 1)}, "dense_mean"),
    ({"dense_std": (1.0,) * (D - 1) + (float("nan"),)}, "dense_std"),
    ({"dense_std": (1.0,) * (D - 1) + (0.0,)}, "dense_std"),
]


def random_features(n: int, config: RankerConfig, seed: int = 0) -> Batch:
    import torch

    g = torch.Generator().manual_seed(seed)
    sparse = torch.stack([torch.randint(0, s, (n,), generator=g) for s in config.sparse_sizes], dim=1)  # (N, F)
    multi = (torch.rand(n, config.n_multi, generator=g) < 0.2).float()  # (N, G)
    multi[0] = 0.0  # a row without any genre
    dense = torch.randn(n, config.n_dense, generator=g) * 5 + 3  # (N, D), raw scale
    return sparse, multi, dense


def config(**kw: Any) -> DeepFMConfig:
    from streamrec.models.deepfm import DeepFMConfig

    return DeepFMConfig(**{"sparse_sizes": SIZES, "n_multi": G, "n_dense": D, **kw})


LIST, N_VALUES = 8, 12


def matching_lists(n_lists: int, seed: int) -> tuple[Batch, torch.Tensor]:
    """Lists of ``LIST`` candidates; the positive is the one whose field 1 equals the session's field 0.

    Field 0 (the session) is the same within a list, so a model linear in the fields ranks every
    list in the same order of field 1: it cannot find the match. An FM's <v_a, v_b> can.
    """
    import torch

    rng = np.random.default_rng(seed)
    session = rng.integers(0, N_VALUES, n_lists)  # (L,)
    candidate = np.stack([rng.permutation(np.append(rng.choice(np.delete(np.arange(N_VALUES), a), LIST - 1,
                                                               replace=False), a)) for a in session]).reshape(-1)
    session = np.repeat(session, LIST)  # (N,)
    noise = rng.integers(0, 5, size=session.shape)
    sparse = torch.from_numpy(np.stack([session, candidate, noise], axis=1)).long()  # (N, 3)
    multi = torch.from_numpy((rng.random((len(session), 4)) < 0.3).astype(np.float32))  # (N, 4)
    dense = torch.from_numpy(rng.standard_normal((len(session), 2)).astype(np.float32))  # (N, 2)
    labels = torch.from_numpy((candidate == session).astype(np.float32))  # (N,)
    return (sparse, multi, dense), labels


def fit_cross(model: torch.nn.Module, loss: RankLoss) -> tuple[float, list[float]]:
    """Train a ranker on 800 ``matching_lists`` (6 epochs of 50 lists, Adam at 2e-2) and return its accuracy at
    putting the positive first in 300 other lists, and its mean loss per epoch: the cross-learning check."""
    import torch

    (sparse, multi, dense), labels = matching_lists(800, seed=0)
    (t_sparse, t_multi, t_dense), t_labels = matching_lists(300, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    batch = 50 * LIST
    losses = []
    for _ in range(6):
        epoch = []
        for lo in range(0, len(labels), batch):
            part = slice(lo, lo + batch)
            _, value = model(sparse[part], multi[part], dense[part], labels[part], list_size=LIST, loss=loss)
            assert value is not None
            opt.zero_grad()
            value.backward()
            opt.step()
            epoch.append(value.item())
        losses.append(float(np.mean(epoch)))
    model.eval()
    with torch.no_grad():
        top = model.score(t_sparse, t_multi, t_dense).view(-1, LIST).argmax(dim=1)  # (L,)
    return (t_labels.view(-1, LIST).argmax(dim=1) == top).float().mean().item(), losses


# ---------------------------------------------------------------- state() / from_state()


def mixed_data(make_data: MakeData, n_items: int = 30, n: int = 60, seed: int = 0) -> TrainData:
    """Random sequences (repeats included, some items never seen), varied genres and years, spread times."""
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(1, n_items - 2, size=rng.integers(1, 9)) for _ in range(n)]  # the last 3 items unseen
    stamps = [np.sort(rng.integers(0, 90 * 86_400, size=len(s))) for s in seqs]
    names = ["Drama", "Comedy", "Horror", "Film-Noir"]
    genres = ["|".join(g for g in names if rng.random() < 0.4) for _ in range(n_items)]
    years = [None if rng.random() < 0.1 else int(rng.integers(1930, 2001)) for _ in range(n_items)]
    return make_data(seqs, n_items, timestamps=stamps, items=tiny_items(n_items, genres, years))


def round_trip_histories(n_items: int) -> list[np.ndarray]:
    """Histories that exercise every path of ``score``: empty, one item, repeats, padding and unknown items,
    an item never seen in training."""
    return [np.array([], dtype=np.int64), np.array([3]), np.array([1, 2, 3, 2, 5]), np.array([0, 4, n_items + 7, 6]),
            np.array([n_items]), np.arange(1, n_items + 1)]


def frozen(state: Mapping[str, np.ndarray], tmp_path: Path | None = None) -> dict[str, np.ndarray]:
    """``state`` as a server gets it: each array copied and read-only, or with ``tmp_path``, saved and
    memory-mapped read-only (``np.load(mmap_mode="r")``)."""
    out = {}
    for name, a in state.items():
        if tmp_path is None:
            a = a.copy()
            a.flags.writeable = False
        else:
            np.save(tmp_path / f"{name}.npy", a, allow_pickle=False)
            a = np.load(tmp_path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
        out[name] = a
    return out


def numeric_state(state: Mapping[str, np.ndarray]) -> None:
    """Every array is a plain numeric ndarray (no object, string or structured dtype), C-contiguous (as a
    ``.npy`` file maps it back)."""
    for name, a in state.items():
        assert isinstance(a, np.ndarray), name
        assert a.dtype.kind in "biuf" and a.dtype.names is None, (name, a.dtype)
        assert a.flags.c_contiguous, name


def assert_round_trip(model: Any, data: TrainData, tmp_path: Path | None = None) -> Any:
    """Fit ``model``, send its config through JSON and its state through ``frozen``, rebuild it with
    ``from_state``, and check that the rebuilt model scores bit-identically, restates the same arrays,
    and kept the loaded arrays without copying them. Returns the rebuilt model."""
    model.fit(data)
    state = model.state()
    numeric_state(state)
    config = type(model.config)(**json.loads(json.dumps(dataclasses.asdict(model.config))))
    assert config == model.config
    loaded = frozen(state, tmp_path)
    restored = type(model).from_state(config, loaded)
    histories = round_trip_histories(data.n_items)
    expected, got = model.score(histories), restored.score(histories)
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()  # bit-identical, -inf and signed zeros included
    assert [restored.recommend(h, 5) for h in histories] == [model.recommend(h, 5) for h in histories]
    again = restored.state()
    assert again.keys() == state.keys()
    for name, a in state.items():
        assert again[name].dtype == a.dtype and np.array_equal(again[name], a), name
        if a.size > 1 and not name.endswith(".shape"):  # scalars and shapes are rebuilt, arrays kept
            assert np.shares_memory(again[name], loaded[name]), f"{name} was copied"
    return restored


def assert_onnx_parity(model: Any, served: Any) -> None:
    """``served`` (the model's published ONNX graph, loaded) scores as the torch ``model`` does, within 1e-5,
    and picks the same best of each list: for N other than the traced example's, on raw dense values
    spread as the config's statistics describe them. Leaves ``model`` in eval mode."""
    import torch

    model.eval()
    mean, std = torch.tensor(model.config.dense_mean), torch.tensor(model.config.dense_std)
    for n, seed in ((200, 0), (1, 1), (40, 2)):
        sparse, multi, dense = random_features(n, model.config, seed)
        x = sparse, multi, (dense - 3) / 5 * std + mean
        with torch.no_grad():
            want = model.score(*x).numpy()
        got = served.score(*(t.numpy() for t in x))
        assert got.shape == (n,) and got.dtype == np.float32 and (n == 1 or want.std() > 0.5), want.std()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        if n % LIST == 0:
            np.testing.assert_array_equal(got.reshape(-1, LIST).argmax(1), want.reshape(-1, LIST).argmax(1))
