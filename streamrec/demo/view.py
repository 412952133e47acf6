"""What ``streamrec live`` shows: a table redrawn in place on a terminal, one plain line per click otherwise
(a log file, a CI job, ``make demo | tee``), so nothing depends on cursor movement."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from streamrec.demo.live import Scoreboard, StepResult

__all__ = ["LiveView", "format_summary", "plain_line", "render"]

_TOP = 3  # recommendations shown per row; the hit column covers the whole top k


def _title(titles: Mapping[str, str], item: str, width: int = 32) -> str:
    title = titles.get(item) or f"item {item}"
    return title if len(title) <= width else title[: width - 1] + "…"


def _scores(board: Scoreboard) -> str:
    s = board.summary()
    return (f"HR@{board.k} {board.hit_rate:.3f} ({board.hits}/{board.predictions})  "
            f"Recommend p50 {s['latency_p50_ms']:.1f} ms p99 {s['latency_p99_ms']:.1f} ms  "
            f"click->Redis p50 {s['apply_p50_ms']:.1f} ms")


def _verdict(result: StepResult) -> str:
    return f"hit @{result.rank}" if result.hit else "miss"


def plain_line(result: StepResult, board: Scoreboard, titles: Mapping[str, str]) -> str:
    """One click as a line of text, with the running scores."""
    step = result.step
    top = "; ".join(_title(titles, i, 28) for i in result.recommended[:_TOP])
    return (f"[{board.predictions:4}] {step.session.session_id} click {step.position + 1}: "
            f"{_title(titles, step.clicked)!r} -> next {_title(titles, step.next_item)!r}: {_verdict(result)} | "
            f"top: {top} | {_scores(board)}")


def render(board: Scoreboard, titles: Mapping[str, str], note: str = "") -> Group:
    """The latest clicks, newest first, under a line of running scores."""
    table = Table(expand=True, show_lines=False, header_style="bold")
    for name, kwargs in (("session", {"no_wrap": True, "max_width": 24}), ("#", {"justify": "right"}),
                         ("clicked", {}), ("next click", {}), (f"top-{board.k}?", {"no_wrap": True}),
                         (f"top {_TOP} recommendations", {})):
        table.add_column(name, **kwargs)  # type: ignore[arg-type]
    for result in board.recent:
        step = result.step
        top = Text("\n").join(Text(f"{rank}. {_title(titles, item, 30)}",
                                   style="bold green" if item == step.next_item else "")
                              for rank, item in enumerate(result.recommended[:_TOP], 1))
        verdict = Text(_verdict(result), style="bold green" if result.hit else "red")
        table.add_row(step.session.session_id, str(step.position + 1), _title(titles, step.clicked),
                      _title(titles, step.next_item), verdict, top)
    header = Text(_scores(board), style="bold")
    return Group(header, Text(note, style="dim"), table) if note else Group(header, table)


def format_summary(summary: Mapping[str, Any]) -> str:
    k = summary["k"]
    return (f"{summary['sessions']} session(s), {summary['predictions']} prediction(s): HR@{k} "
            f"{summary[f'hr@{k}']:.3f} ({summary['hits']} hits); "
            f"Recommend latency p50 {summary['latency_p50_ms']:.1f} ms, p99 {summary['latency_p99_ms']:.1f} ms; "
            f"click to Redis p50 {summary['apply_p50_ms']:.1f} ms, p99 {summary['apply_p99_ms']:.1f} ms; "
            f"models: {', '.join(f'{m} {v}' for m, v in sorted(summary['model_versions'].items())) or 'none'}")


class LiveView:
    """``with LiveView(titles) as view: view.update(result, board)``; ``quiet`` shows nothing."""

    def __init__(self, titles: Mapping[str, str], note: str = "", *, stream: TextIO | None = None,
                 quiet: bool = False) -> None:
        self.titles, self.note, self.quiet = titles, note, quiet
        self.stream = stream or sys.stdout
        self.console = Console(file=self.stream)
        self._live: Live | None = None

    def __enter__(self) -> LiveView:
        if self.quiet:
            return self
        if self.console.is_terminal:
            self._live = Live(console=self.console, refresh_per_second=4, auto_refresh=False)
            self._live.start()
        elif self.note:
            print(self.note, file=self.stream, flush=True)
        return self

    def update(self, result: StepResult, board: Scoreboard) -> None:
        if self.quiet:
            return
        if self._live is not None:
            self._live.update(render(board, self.titles, self.note), refresh=True)
        else:
            print(plain_line(result, board, self.titles), file=self.stream, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
