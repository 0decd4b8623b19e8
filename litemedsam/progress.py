"""Progress within a case (slices of a 3D volume), for whoever shows it: the pipeline reports, the command line
decides whether and how to show (a bar on a terminal for cases that take more than a few seconds)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable

_reporter: Callable[[int, int], None] | None = None


def report(done: int, total: int) -> None:
    """``done`` of ``total`` steps of the current case are finished."""
    if _reporter is not None:
        _reporter(done, total)


@contextmanager
def reporting(reporter: Callable[[int, int], None] | None):
    """Send the reports of the block to ``reporter``."""
    global _reporter
    previous, _reporter = _reporter, reporter
    try:
        yield
    finally:
        _reporter = previous
