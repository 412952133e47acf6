"""Wide & Deep, DCN-v2 and DLRM keep DeepFM's contract: the same inputs, losses, config rules, ONNX
graph and loader, and each learns the cross of two fields that ``test_deepfm`` sets DeepFM. The
shapes-and-losses test covers DeepFM too."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from streamrec.export import load_ranker, publish, ranker_graph
from streamrec.models.dcnv2 import DCNv2, DCNv2Config
from streamrec.models.deepfm import DeepFM, RankLoss
from streamrec.models.dlrm import DLRM, DLRMConfig
from streamrec.models.widedeep import WideDeep, WideDeepConfig
from tests.models.helpers import BAD_CONFIGS, N_VALUES, D, assert_onnx_parity, config, fit_cross, random_features

# every kind of wide cross: two sparse fields (hashed: 3707 x 12 > 256), multi x sparse, dense x sparse, dense x dense
CROSSES = (("sparse:0", "sparse:1"), ("sparse:3", "sparse:4"), ("multi", "sparse:2"), ("dense:0", "sparse:4"),
           ("dense:1", "dense:2"))
KINDS: dict[str, tuple[type[nn.Module], type, dict[str, Any]]] = {
    "widedeep": (WideDeep, WideDeepConfig, {"crosses": CROSSES, "cross_buckets": 256}),
    "dcnv2": (DCNv2, DCNv2Config, {}),
    "dcnv2-parallel-rank8": (DCNv2, DCNv2Config, {"structure": "parallel", "low_rank": 8, "cross_layers": 2}),
    "dlrm": (DLRM, DLRMConfig, {"bottom": (32, 16)}),
}


def ranker_config(kind: str, **kw: Any) -> Any:
    """``kind``'s config: the test DeepFM config's fields (``helpers.config``) and its own, then ``kw``."""
    _, cls, own = KINDS[kind]
    return cls(**{**dataclasses.asdict(config()), **own, **kw})


def make(kind: str, **kw: Any) -> Any:
    if kind == "deepfm":
        return DeepFM(config(**kw))
    return KINDS[kind][0](ranker_config(kind, **kw))


# ---------------------------------------------------------------- shapes and configuration


@pytest.mark.parametrize("kind", [*KINDS, "deepfm"])
def test_shapes_and_losses(kind: str) -> None:
    torch.manual_seed(0)
    model = make(kind).eval()
    x = random_features(12, model.config)
    logits, loss = model(*x)
    assert logits.shape == (12,) and loss is None
    torch.testing.assert_close(model.score(*x), logits)
    labels = torch.zeros(12)
    labels[::4] = 1.0
    for loss_kind in ("bce", "listwise"):
        _, loss = model(*x, labels, list_size=4, loss=loss_kind)
        assert loss is not None and loss.shape == () and torch.isfinite(loss)
        loss.backward()
    with pytest.raises(ValueError, match="list_size"):
        model(*x, labels, loss="listwise")
    with pytest.raises(ValueError, match="multiple of list_size"):
        model(*x, labels, list_size=5, loss="listwise")
    with pytest.raises(ValueError, match="loss must be"):
        model(*x, labels, loss="pairwise")


OWN_BAD: list[tuple[str, dict[str, Any], str]] = [
    ("widedeep", {"cross_buckets": 0}, "cross_buckets"),
    ("widedeep", {"dense_boundaries": (0.0, -1.0)}, "dense_boundaries"),
    ("widedeep", {"dense_boundaries": (0.0, float("inf"))}, "dense_boundaries"),
    ("widedeep", {"crosses": (("multi", "multi"),)}, "crosses"),
    ("widedeep", {"crosses": (("sparse:1", "sparse:1"),)}, "crosses"),
    ("widedeep", {"crosses": (("sparse:1", "sparse:5"),)}, "sparse:5"),
    ("widedeep", {"crosses": (("dense:30", "multi"),)}, "dense:30"),
    ("widedeep", {"crosses": (("item", "multi"),)}, "item"),
    ("widedeep", {"crosses": (("sparse:0", "sparse:1", "multi"),)}, "crosses"),
    ("dcnv2", {"cross_layers": 0}, "cross_layers"),
    ("dcnv2", {"low_rank": 0}, "low_rank"),
    ("dcnv2", {"structure": "tower"}, "structure"),
    ("dlrm", {"bottom": (16, 0)}, "bottom"),
]


@pytest.mark.parametrize(("kind", "change", "match"),
                         [(k, c, m) for k in ("widedeep", "dcnv2", "dlrm") for c, m in BAD_CONFIGS] + OWN_BAD)
def test_bad_configs_are_refused(kind: str, change: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ranker_config(kind, **change)


@pytest.mark.parametrize("kind", KINDS)
def test_config_survives_a_json_round_trip(kind: str) -> None:
    c = ranker_config(kind, dense_mean=tuple(np.arange(D, dtype=np.float64)), dense_std=(2.0,) * D)
    again = type(c)(**json.loads(json.dumps(dataclasses.asdict(c))))
    assert again == c and isinstance(again.sparse_sizes, tuple) and type(again.dense_mean[1]) is float
    assert hash(again) == hash(c)  # every field a tuple again, nested ones too (a list would not hash)


def test_wide_crosses_give_each_combination_its_weight() -> None:
    """Two fields' pair, each active genre with a field's value, a dense bucket with a field's value; hashed
    into ``cross_buckets`` only when the combinations are more."""
    c = WideDeepConfig(sparse_sizes=(3, 4), n_multi=2, n_dense=1, hidden=(), dropout=0.0, cross_buckets=64,
                       crosses=(("sparse:0", "sparse:1"), ("sparse:0", "multi"), ("dense:0", "sparse:1")),
                       dense_boundaries=(-1.0, 1.0))
    model = WideDeep(c).eval()
    pair, genre, bucket = model.cross_w
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        pair.weight.copy_(torch.arange(12.0)[:, None])  # field 0's a, field 1's b: weight a * 4 + b
        genre.weight.copy_(100 * torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))  # (field 0's value, genre)
        bucket.weight.copy_(1000 * torch.arange(12.0)[:, None])  # dense bucket k, field 1's b: k * 4 + b
        got = model.score(torch.tensor([[0, 0], [2, 3], [1, 2]]), torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]]),
                          torch.tensor([[-5.0], [0.0], [5.0]]))  # buckets 0, 1, 2
    torch.testing.assert_close(got, torch.tensor([0.0, 11 + 1100 + 7000, 6 + 400 + 10000]))
    hashed = WideDeep(dataclasses.replace(c, cross_buckets=5))
    assert [t.weight.shape for t in hashed.cross_w] == [(5, 1), (2, 2), (5, 1)]


# ---------------------------------------------------------------- dense statistics inside the model


@pytest.mark.parametrize("kind", [*KINDS, "deepfm"])
def test_dense_features_are_normalised_inside_the_model(kind: str) -> None:
    """Shifting and scaling raw dense values changes nothing once the statistics say so (Wide & Deep's
    dense crosses bucket the normalised values, so they agree too)."""
    torch.manual_seed(0)
    plain = make(kind).eval()
    trained_scale(plain, linear=False)  # weights the dense crosses, without DCN-v2's float error growing past 1e-5
    shift, scale = torch.linspace(-50, 50, D), torch.linspace(0.5, 20, D)
    stats = make(kind, dense_mean=tuple(shift.tolist()), dense_std=tuple(scale.tolist())).eval()
    stats.load_state_dict(plain.state_dict())  # the statistics are not in the state_dict: they stay
    sparse, multi, dense = random_features(16, plain.config)
    with torch.no_grad():
        torch.testing.assert_close(stats.score(sparse, multi, dense * scale + shift), plain.score(sparse, multi, dense),
                                   rtol=1e-5, atol=1e-5)
        assert not torch.allclose(plain.score(sparse, multi, dense * scale + shift), plain.score(sparse, multi, dense))


# ---------------------------------------------------------------- published and served by onnxruntime


def trained_scale(model: nn.Module, *, linear: bool = True) -> None:
    """Weights of a trained model's scale, so scores spread over a few units and the parity check compares
    values, not near-zeros: embeddings and wide weights of std 0.5, and with ``linear`` linear layers
    He-initialised."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("_emb", "_emb.weight", "_w", "_w.weight")) or name.startswith("cross_w."):
                p.normal_(std=0.5)
        for layer in model.modules():
            if linear and isinstance(layer, nn.Linear):
                layer.weight.normal_(std=(2 / layer.in_features) ** 0.5)


@pytest.mark.parametrize("kind", KINDS)
def test_onnx_scores_match_torch(tmp_path: Path, kind: str) -> None:
    torch.manual_seed(0)
    model = make(kind, dense_mean=tuple(np.linspace(-3, 3, D)), dense_std=tuple(np.linspace(0.5, 4, D)))
    trained_scale(model)
    version_dir = publish(model, model.config, graph=ranker_graph(model.config), name="deepfm", dataset="synthetic",
                          protocol={"protocol": "session"}, metrics={}, registry=tmp_path)
    served = load_ranker(version_dir)
    assert model.training  # publish leaves the mode as it found it
    assert_onnx_parity(model, served)
    assert served.manifest["model_class"] == type(model).__name__
    assert type(model.config)(**served.manifest["config"]) == model.config


# ---------------------------------------------------------------- it learns a feature cross

# matching_lists (helpers): 3 sparse fields (the session's, the candidate's, noise), 4 genres, 2 dense
SMALL = {"sparse_sizes": (N_VALUES, N_VALUES, 5), "n_multi": 4, "n_dense": 2, "d_embed": 8, "hidden": (32,),
         "dropout": 0.0}
LEARNERS: dict[str, tuple[type[nn.Module], Any]] = {
    # the cross Wide & Deep is for: a weight per (session value, candidate value)
    "widedeep": (WideDeep, WideDeepConfig(**SMALL, crosses=(("sparse:0", "sparse:1"),), cross_buckets=N_VALUES ** 2)),
    "dcnv2": (DCNv2, DCNv2Config(**SMALL)),
    "dcnv2-parallel-rank4": (DCNv2, DCNv2Config(**SMALL, structure="parallel", low_rank=4)),
    "dlrm": (DLRM, DLRMConfig(**SMALL, bottom=(8,))),
}


@pytest.mark.parametrize("loss", ["bce", "listwise"])
@pytest.mark.parametrize("kind", LEARNERS)
def test_it_learns_a_cross_of_two_fields(kind: str, loss: RankLoss) -> None:
    """``test_deepfm``'s test and bar: the positive is the candidate whose field 1 equals the session's field 0."""
    torch.manual_seed(0)
    cls, c = LEARNERS[kind]
    accuracy, losses = fit_cross(cls(c), loss)
    assert accuracy > 0.9, (accuracy, losses)
    assert losses[-1] < 0.5 * losses[0], losses
