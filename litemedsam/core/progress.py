"""Progress within a case (slices of a 3D volume), for whoever shows it: the pipeline reports, the command line
decides whether and how to show (a bar on a terminal for cases that take more than a few seconds), the web
app shows it on the page and cancels through it. Each thread has its own reporter."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Callable

_local = threading.local()


def report(done: int, total: int) -> None:
    """``done`` of ``total`` steps of the current case are finished (a reporter may raise to stop the case)."""
    reporter = getattr(_local, "reporter", None)
    if reporter is not None:
        reporter(done, total)


@contextmanager
def reporting(reporter: Callable[[int, int], None] | None):
    """Send the reports of the block (in this thread) to ``reporter``."""
    previous = getattr(_local, "reporter", None)
    _local.reporter = reporter
    try:
        yield
    finally:
        _local.reporter = previous
