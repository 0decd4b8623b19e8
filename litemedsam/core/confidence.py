"""The decoder's predicted IoU of each object's mask (SAM's confidence score), collected per case: the pipeline
notes each decoded mask's score under its label, whoever runs a case collects them (run.json, the Python API).
Each thread has its own collector, as for litemedsam.core.progress."""
from __future__ import annotations

import threading
from contextlib import contextmanager

_local = threading.local()


def note(label: int, score) -> None:
    """One decoded mask of object ``label`` had this predicted IoU (None: the model gives none)."""
    scores = getattr(_local, "scores", None)
    if scores is not None and score is not None:
        scores.setdefault(int(label), []).append(float(score))


@contextmanager
def collecting():
    """The scores noted in the block (in this thread), label -> list, one per decoded mask (a volume's slices)."""
    previous = getattr(_local, "scores", None)
    _local.scores = {}
    try:
        yield _local.scores
    finally:
        _local.scores = previous


def summary(scores: dict) -> dict:
    """label -> mean predicted IoU over its masks, rounded, for a record."""
    return {label: round(sum(v) / len(v), 4) for label, v in sorted(scores.items()) if v}
