"""Model names for the command line -> fresh, unfitted ``Recommender`` instances.

Models are imported lazily, so evaluating ``pop`` does not import torch, and a model whose
module is missing fails with an error naming that module instead of breaking every command.

Convention for a model module: it defines a class whose class attribute ``name`` equals the
registry name and which can be built with no arguments (its default config). ``sknn`` and
``vsknn`` share a module, as do the neural models' adapters, so the lookup is by ``name``, not by
class name. The neural networks' modules hold the networks only; what trains them on ``fit``
lives in ``streamrec.train.recommenders``.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, cast

import numpy as np

from streamrec.errors import ConfigError
from streamrec.models.base import Recommender, TrainData

__all__ = ["MODULES", "RandomScorer", "available", "create"]

#: registry name -> module under ``streamrec.models`` that holds it ("" = defined here), or the dotted
#: path of a module that builds it from models: the neural models' trainers, the ranking pipeline.
MODULES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "random": "",
        "pop": "popularity",
        "itemknn": "itemknn",
        "sknn": "sknn",
        "vsknn": "sknn",
        "mf": "mf",
        "content": "content",
        "sasrec": "streamrec.train.recommenders",
        "gru4rec": "streamrec.train.recommenders",
        "bert4rec": "streamrec.train.recommenders",
        "neumf": "streamrec.train.recommenders",
        "autorec": "streamrec.train.recommenders",
        "srgnn": "streamrec.train.recommenders",
        "lightgcn": "streamrec.train.recommenders",
        "pipeline": "streamrec.offline.assemble",
    }
)


@dataclass
class RandomScorer:
    """Uniform random scores: the floor every model must clear. Seeded, so runs repeat.

    Defined here rather than under ``streamrec.models`` because it is a yardstick of the
    evaluation, not a candidate generator anyone would serve.
    """

    seed: int = 0
    name: str = "random"

    def __post_init__(self) -> None:
        self._rng = np.random.default_rng(self.seed)
        self._n_items = 0

    def fit(self, data: TrainData) -> RandomScorer:
        self._n_items = data.n_items
        self._rng = np.random.default_rng(self.seed)
        return self

    def score(self, histories: Sequence[np.ndarray]) -> np.ndarray:
        scores = self._rng.random((len(histories), self._n_items + 1), dtype=np.float32)
        scores[:, 0] = -np.inf
        return scores


def available() -> tuple[str, ...]:
    """Every registry name, whether or not its module can be imported here."""
    return tuple(MODULES)


def create(name: str) -> Recommender:
    """A new, unfitted model called ``name``.

    Raises ``ConfigError`` for an unknown name, a missing module (naming it) or a module without
    a matching class.
    """
    factory = _factory(name)
    model = factory()
    if not isinstance(model, Recommender):
        raise ConfigError(f"{type(model).__qualname__} (model {name!r}) does not implement fit/score/name")
    return model


def _factory(name: str) -> Callable[[], Recommender]:
    if name not in MODULES:
        raise ConfigError(f"unknown model {name!r}; choose from {', '.join(MODULES)}")
    if not MODULES[name]:
        return RandomScorer
    path = MODULES[name] if "." in MODULES[name] else f"streamrec.models.{MODULES[name]}"
    try:
        module = importlib.import_module(path)
    except ModuleNotFoundError as exc:
        if exc.name in (path, "streamrec.models"):
            raise ConfigError(f"model {name!r} lives in the module {path}, which does not exist") from None
        raise ConfigError(f"model {name!r}: importing {path} failed: {exc}; install what it needs") from exc
    classes = [
        obj
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if obj.__module__ == module.__name__ and getattr(obj, "name", None) == name
    ]
    if len(classes) != 1:
        found = [c.__name__ for _, c in inspect.getmembers(module, inspect.isclass) if c.__module__ == module.__name__]
        raise ConfigError(
            f"{path} should define exactly one class with name = {name!r}; it has {len(classes)} "
            f"(classes there: {', '.join(found) or 'none'})"
        )
    return cast("Callable[[], Recommender]", classes[0])
