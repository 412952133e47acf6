"""Offline evaluation: protocols that split a log (``protocols``), full-ranking metrics (``metrics``),
one evaluation function for validation and test (``evaluate``), model names (``factory``) and
reports (``report``). ``streamrec evaluate`` is the command line over these."""

from __future__ import annotations

from streamrec.eval.evaluate import evaluate, fit_and_evaluate
from streamrec.eval.protocols import DEFAULT_TEST_DAYS, Cases, LeaveOneOut, SessionSplit, Split, split

__all__ = [
    "DEFAULT_TEST_DAYS",
    "Cases",
    "LeaveOneOut",
    "SessionSplit",
    "Split",
    "evaluate",
    "fit_and_evaluate",
    "split",
]
