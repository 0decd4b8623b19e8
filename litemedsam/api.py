"""The Python API: what ``litemedsam infer`` does to one file, for arrays in a notebook or a program.

    import litemedsam
    labels = litemedsam.segment(image, boxes)                  # 2D or 3D, as `infer` segments a case
    predictor = litemedsam.Predictor()                          # segment-anything's SamPredictor, for boxes
    predictor.set_image(image2d)                                # encoded once ...
    masks, scores = predictor.predict(boxes)                    # ... for as many boxes as you like

``segment`` is `infer`'s per-case code: the same intensity rule, router decision (model, 3D strategy, mask
strategies; ``exact`` as `--exact`) and masks. Problems raise ``litemedsam.core.errors.LitemedsamError`` (a
``CaseError`` for bad arrays, a ``ModelError`` for a model that is not built) with the message `infer`
prints; a case's warnings (a box clipped, HU data taken as CT) are issued with ``warnings.warn``.
"""
from __future__ import annotations

import threading
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np

from litemedsam.core import confidence
from litemedsam.core.errors import CaseError
from litemedsam.core.limits import MAX_OBJECTS, check_size
from litemedsam.io.cases import clip_boxes, make_case
from litemedsam.io.intensity import checked_window, prepare
from litemedsam.methods.prompting import BoxPrompting
from litemedsam.methods.router import Router
from litemedsam.models.segmenter import Embedding, make_segmenter
from litemedsam.models.session import resolve_threads

_SEGMENTERS: dict = {}
_LOCK = threading.Lock()


def _segmenter(model: str, threads: int | None):
    """One runtime object per (model, threads) per process: sessions are made once. ``threads`` is checked as
    `infer --threads` checks it (an integer 1-1024; more than the CPUs is capped to them)."""
    threads = None if threads is None else resolve_threads(threads, "threads=")[0]
    with _LOCK:
        if (model, threads) not in _SEGMENTERS:
            _SEGMENTERS[model, threads] = make_segmenter(model, threads=threads)
        return _SEGMENTERS[model, threads]


@lru_cache(maxsize=1)
def _shipped_router() -> Router:
    return Router.load()


def _uint8(image, modality: str | None, window: tuple | None, router: Router | None = None) -> tuple:
    """(uint8 image, modality the data say, warnings): `infer`'s intensity rule for any real dtype; ``modality`` and
    ``window`` checked as `infer` checks --modality and --window (against ``router``, default the shipped one)."""
    (router or _shipped_router()).check_modality(modality, "modality=")
    if window is not None:
        given = tuple(window) if isinstance(window, (tuple, list, np.ndarray)) and len(window) == 2 else (0, 0)
        window = checked_window(*given, option=f"window={str(window)[:40]}")
    image = np.asarray(image)
    if image.dtype == np.bool_:
        image = image.astype(np.uint8) * np.uint8(255)
    return prepare(image, "", modality, window)


def segment(image, boxes, modality: str | None = None, window: tuple | None = None, exact: bool = False,
            model: str | None = None, starts=None, threads: int | None = None, router: Router | None = None,
            scores: bool = False):
    """Label map of ``image`` for ``boxes``, label k for the k-th box (uint8; uint16 above 255 boxes).

    image: 2D (H, W) or (H, W, 3), or 3D (D, H, W), any real dtype (not uint8: the modality's intensity rule,
    CT window or 0.5-99.5 percentiles, or ``window=(level, width)``). boxes: (N, 4) ``x0, y0, x1, y1`` for a
    2D image, (N, 6) ``x0, y0, z0, x1, y1, z1`` for a volume, inclusive pixel indices. modality: "CT", "MR",
    ... (routes the case and picks its intensity rule; None: found from the data where it can, HU -> CT).
    starts: a volume's start slice per box (default: the middle of its z-range). model: a registered model
    instead of the router's choice; exact: the reference's computation (`infer --exact`). scores: also return
    each object's confidence, label -> the decoder's mean predicted IoU of its masks (as run.json records it).
    """
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] not in (4, 6):
        raise CaseError(f"boxes must be an (N, 4) array for a 2D image or (N, 6) for a volume, got shape {boxes.shape}")
    dim = "2D" if boxes.shape[1] == 4 else "3D"
    data, found, notes = _uint8(image, modality, window, router)
    case = make_case(Path("array"), data, boxes, dim=dim, starts=starts, modality=modality or found, warnings=notes)
    for note in case.warnings:
        warnings.warn(note, stacklevel=2)
    prompting = BoxPrompting(router or _shipped_router(), model, modality or found, exact)
    plan = prompting.choose(case)
    with confidence.collecting() as noted:
        labels = prompting.segment(_segmenter(plan.model, threads), case, plan)
    return (labels, confidence.summary(noted)) if scores else labels


class Predictor:
    """segment-anything's ``SamPredictor`` for box prompts: ``set_image`` encodes a 2D image once, ``predict``
    decodes any number of boxes against it (the router's mask strategies do not apply: these are the model's
    own masks, as `infer --exact` gives them)."""

    def __init__(self, model: str = "litemedsam", threads: int | None = None):
        self.segmenter = _segmenter(model, threads)
        self.embedding: Embedding | None = None
        self.shape: tuple | None = None

    def set_image(self, image, modality: str | None = None, window: tuple | None = None) -> None:
        """Encode a 2D image, (H, W) or (H, W, 3), any real dtype (see ``segment``)."""
        data, _, notes = _uint8(image, modality, window)
        if data.ndim not in (2, 3) or (data.ndim == 3 and data.shape[2] != 3) or min(data.shape[:2]) < 1:
            raise CaseError(f"a 2D image is (H, W) or (H, W, 3), got shape {data.shape}")
        for note in notes:
            warnings.warn(note, stacklevel=2)
        self.embedding = self.segmenter.encode(data)
        self.shape = data.shape[:2]

    def predict(self, boxes) -> tuple[np.ndarray, np.ndarray]:
        """(N, 4) boxes ``x0, y0, x1, y1`` in image pixels -> (N, H, W) bool masks and (N,) scores: the
        decoder's predicted IoU of each mask, its confidence. Boxes are clipped to the image as ``segment`` clips
        them, with its warnings; a box inverted or outside the image gets an empty mask and score 0."""
        if self.embedding is None:
            raise CaseError("no image: call set_image first")
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.ndim == 1 and boxes.size == 4:
            boxes = boxes[None]
        if boxes.ndim != 2 or boxes.shape[1] != 4 or not np.isfinite(boxes).all():
            raise CaseError(f"boxes must be a finite (N, 4) array, got shape {boxes.shape}")
        h, w = self.shape
        if len(boxes) > MAX_OBJECTS:
            raise CaseError(f"{len(boxes)} boxes; a case holds at most {MAX_OBJECTS} objects (as segment)")
        check_size(len(boxes) * h * w, f"{len(boxes)} masks of {w} x {h} need {len(boxes) * h * w} bytes",
                   f"{len(boxes)} masks of {w} x {h}")
        clipped, skipped, notes = clip_boxes(boxes, "2D", self.shape)  # as segment clips them, and warns
        for note in notes:
            warnings.warn(note, stacklevel=2)
        masks, scores = np.zeros((len(boxes), h, w), bool), np.zeros(len(boxes), np.float32)
        used = np.array([i for i in range(len(boxes)) if i + 1 not in skipped], int)
        if len(used):
            low, found = self.segmenter.decode(self.embedding, self.embedding.frame.boxes_to_model(clipped[used]))
            masks[used], scores[used] = self.embedding.frame.masks(low, self.segmenter.upsample), found
        return masks, scores
