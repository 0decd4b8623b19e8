"""The decoder's predicted IoU of each object's mask (SAM's confidence score), collected per case: the pipeline
notes each decoded mask's score under its label, whoever runs a case collects them (run.json, the Python API)
with ``collecting``: a context variable, as litemedsam.core.progress's reporter."""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

_scores: ContextVar[dict | None] = ContextVar("litemedsam_confidence", default=None)


def note(label: int, score) -> None:
    """One decoded mask of object ``label`` had this predicted IoU (None: the model gives none)."""
    scores = _scores.get()
    if scores is not None and score is not None:
        scores.setdefault(int(label), []).append(float(score))


@contextmanager
def collecting():
    """The scores noted in the block, label -> list, one per decoded mask (a volume's slices)."""
    token = _scores.set({})
    try:
        yield _scores.get()
    finally:
        _scores.reset(token)


def summary(scores: dict) -> dict:
    """label -> mean predicted IoU over its masks, rounded, for a record."""
    return {label: round(sum(v) / len(v), 4) for label, v in sorted(scores.items()) if v}
