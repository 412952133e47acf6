"""Reuses the models' tiny-data fixtures: the ranking stage is built from the same ``TrainData``."""

from __future__ import annotations

from tests.models.conftest import make_data, tiny_items

__all__ = ["make_data", "tiny_items"]
