"""``streamrec worker``: builds the Faust app with its topics and agent, and runs it."""

from __future__ import annotations

import asyncio

import faust
import uvloop
from faust.worker import Worker

from streamrec.settings import Settings
from streamrec.stream.agents import register_session_agent
from streamrec.stream.app import create_app
from streamrec.stream.resume import install_resume
from streamrec.stream.topics import Topics, ensure_topics

__all__ = ["build_worker_app", "run_worker"]


def build_worker_app(settings: Settings, dry_run: bool = False) -> faust.App:
    app = create_app(settings)
    if not dry_run:
        install_resume(app, settings)
    register_session_agent(app, Topics(app, settings), settings, dry_run)
    return app


def run_worker(settings: Settings, loglevel: str = "info", dry_run: bool = False) -> None:
    """Block until SIGTERM/SIGINT; Faust commits processed offsets on the way out.

    ``dry_run`` consumes and counts without touching sessions: the Faust-only ceiling."""
    ensure_topics(settings)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())  # ~20% more events/s through Faust
    app = build_worker_app(settings, dry_run)
    Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False).execute_from_commandline()
