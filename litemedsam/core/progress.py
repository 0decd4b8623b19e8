"""Progress within a case (slices of a 3D volume), for whoever shows it: the pipeline reports, the command line
decides whether and how to show (a bar on a terminal for cases that take more than a few seconds), the web
app shows it on the page and cancels through it. The reporter is a context variable: set for a block by
``reporting``, seen by what that block runs (its thread, or the tasks and threads given its context)."""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable

_reporter: ContextVar[Callable[[int, int], None] | None] = ContextVar("litemedsam_progress", default=None)


def report(done: int, total: int) -> None:
    """``done`` of ``total`` steps of the current case are finished (a reporter may raise to stop the case)."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(done, total)


@contextmanager
def reporting(reporter: Callable[[int, int], None] | None):
    """Send the reports of the block to ``reporter``; None: to whoever hears them around the block (the protocol
    server's check that its client is still there), as if it were not given."""
    if reporter is None:
        yield
        return
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)
