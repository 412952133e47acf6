"""What ``streamrec live`` prints when stdout is not a terminal, and the table it draws when it is."""

from __future__ import annotations

import io

from rich.console import Console

from streamrec.demo.live import LiveSession, Scoreboard, Step, StepResult
from streamrec.demo.view import LiveView, format_summary, render

TITLES = {"1": "Toy Story (1995)", "2": "Babe (1995)", "3": "Heat (1995)", "4": "Casino (1995)"}


def scored() -> tuple[Scoreboard, list[StepResult]]:
    session = LiveSession("live-r-0-u7", "7", ("1", "2", "3"))
    board = Scoreboard(k=10)
    results = [StepResult(Step(session, 0), ("4", "2"), 12.5, 3.0), StepResult(Step(session, 1), ("4", "1"), 7.5, 2.0)]
    for r in results:
        board.record(r)
    return board, results


def test_without_a_terminal_each_click_is_one_plain_line() -> None:
    out = io.StringIO()
    board = Scoreboard(k=10)
    _, results = scored()
    with LiveView(TITLES, "2 sessions", stream=out) as view:
        for r in results:
            board.record(r)
            view.update(r, board)
    lines = out.getvalue().splitlines()
    assert lines[0] == "2 sessions" and len(lines) == 3 and "\x1b" not in out.getvalue()
    assert "'Toy Story (1995)' -> next 'Babe (1995)': hit @2" in lines[1] and "HR@10 1.000 (1/1)" in lines[1]
    assert "'Babe (1995)' -> next 'Heat (1995)': miss" in lines[2] and "HR@10 0.500 (1/2)" in lines[2]
    assert "top: Casino (1995); Toy Story (1995)" in lines[2]


def test_quiet_prints_nothing() -> None:
    out = io.StringIO()
    board, results = scored()
    with LiveView(TITLES, "note", stream=out, quiet=True) as view:
        view.update(results[0], board)
    assert out.getvalue() == ""


def test_the_table_shows_titles_verdicts_and_running_scores() -> None:
    board, _ = scored()
    console = Console(file=io.StringIO(), width=160, record=True)
    console.print(render(board, TITLES, "a note"))
    text = console.export_text()
    assert "HR@10 0.500 (1/2)" in text and "Recommend p50 10.0 ms" in text and "a note" in text
    assert text.index("miss") < text.index("hit @2")  # newest first
    assert "Casino (1995)" in text and "Heat (1995)" in text


def test_the_summary_line_names_hit_rate_and_latencies() -> None:
    board, _ = scored()
    summary = board.summary() | {"sessions": 1, "model_versions": {"deepfm": "v1"}}
    line = format_summary(summary)
    assert line.startswith("1 session(s), 2 prediction(s): HR@10 0.500 (1 hits)")
    assert "p50 10.0 ms" in line and "deepfm" in line
